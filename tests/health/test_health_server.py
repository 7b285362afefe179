"""The health node over real HTTP: liveness, readiness, errors, limits, port handling."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from health_helpers import (
    PROBES,
    BeatingEngine,
    make_config,
    make_ctx,
    occupied_port,
    request,
    running,
)

from atb.config.base import format_validation_error
from atb.config.validate import validate_config
from atb.health.server import HealthPortInUse, HealthServer, HealthServerConfig, resolve_port
from atb.runtime.context import RunContext
from atb.runtime.errors import ConfigError, NodeError
from atb.runtime.runner import Runner

# Each test starts a process of its own (the health server, a session or the CLI): e2e.
pytestmark = pytest.mark.e2e


ONLY_CONFIG = [{"_target_": "atb.health.checks.ConfigCheck"}]


def test_health_is_healthy_while_the_loop_beats() -> None:
    with running(make_config(checks=ONLY_CONFIG)) as server:
        PROBES.heartbeat.start(interval=1.0)
        PROBES.heartbeat.beat(price=100.0)
        resp = request(server, "/health")
        assert resp.status == 200
        assert resp.headers["content-type"] == "application/json"
        body = resp.json()
        assert body["status"] == "healthy"
        assert body["service"] == "atb"
        assert body["timestamp"].endswith("Z")
        loop = body["loop"]
        assert loop["state"] == "running"
        assert loop["iterations"] == 1
        assert 0 <= loop["heartbeat_age_seconds"] < 1
        assert loop["max_silence_seconds"] == 3.0  # 3 × the loop's interval
        assert loop["info"] == {"price": 100.0}


def test_loop_stall_gives_503_with_a_reason() -> None:
    with running(make_config(checks=ONLY_CONFIG, max_silence=0.2)) as server:
        PROBES.heartbeat.start(interval=0.05)
        PROBES.heartbeat.beat()
        assert request(server, "/health").status == 200
        time.sleep(0.3)
        resp = request(server, "/health")
        assert resp.status == 503
        body = resp.json()
        assert body["status"] == "unhealthy"
        assert "has not beaten for" in body["reason"]
        assert body["loop"]["state"] == "stalled"
        assert request(server, "/livez").status == 503
        status = request(server, "/status")
        assert status.status == 503
        assert status.json()["status"] == "unhealthy"
        # and back once the loop beats again
        PROBES.heartbeat.beat()
        assert request(server, "/health").status == 200
        assert request(server, "/livez").status == 200


def test_startup_grace_then_not_started() -> None:
    with running(make_config(checks=ONLY_CONFIG, startup_grace=0.3)) as server:
        resp = request(server, "/health")
        assert resp.status == 200
        assert resp.json()["loop"]["state"] == "starting"
        time.sleep(0.4)
        resp = request(server, "/health")
        assert resp.status == 503
        assert resp.json()["loop"]["state"] == "not_started"
        assert "start-up grace" in resp.json()["reason"]


def test_grace_counts_from_loop_start_when_it_announced_itself() -> None:
    with running(make_config(checks=ONLY_CONFIG, startup_grace=0.3)) as server:
        time.sleep(0.35)
        PROBES.heartbeat.start(interval=10)  # the loop started late, but within its own grace
        assert request(server, "/health").status == 200


def test_livez_and_readyz() -> None:
    with running(make_config(checks=ONLY_CONFIG)) as server:
        PROBES.heartbeat.start(interval=1)
        PROBES.heartbeat.beat()
        live = request(server, "/livez")
        assert live.status == 200
        assert live.json()["status"] == "alive"
        ready = request(server, "/readyz")
        assert ready.status == 200
        assert ready.json() == {**ready.json(), "status": "ready", "checks": {"config": "healthy"}}


def test_stopping_run_is_alive_but_not_ready() -> None:
    ctx = make_ctx()
    with running(make_config(checks=ONLY_CONFIG), ctx) as server:
        ctx.stop_event.set()
        assert request(server, "/health").json()["loop"]["state"] == "stopping"
        assert request(server, "/livez").status == 200
        ready = request(server, "/readyz")
        assert ready.status == 503
        assert "stopping" in ready.json()["reasons"][0]


def test_unknown_path_is_404_json() -> None:
    with running(make_config(checks=ONLY_CONFIG)) as server:
        resp = request(server, "/admin")
        assert resp.status == 404
        assert resp.headers["content-type"] == "application/json"
        assert resp.json() == {"status": "error", "code": 404, "error": "not found"}
        index = request(server, "/").json()
        assert "/metrics" in index["endpoints"]


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
def test_only_get_and_head(method: str) -> None:
    with running(make_config(checks=ONLY_CONFIG)) as server:
        resp = request(server, "/health", method=method, body=b"" if method != "OPTIONS" else None)
        assert resp.status == 405
        assert resp.json()["code"] == 405


def test_head_has_headers_and_no_body() -> None:
    with running(make_config(checks=ONLY_CONFIG)) as server:
        PROBES.heartbeat.start(interval=1)
        PROBES.heartbeat.beat()
        resp = request(server, "/health", method="HEAD")
        assert resp.status == 200
        assert resp.body == b""
        assert int(resp.headers["content-length"]) > 0
        assert request(server, "/status", method="HEAD").status == 200


def _raw(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, TimeoutError):
            pass
        return b"".join(chunks)


def test_oversized_requests_are_rejected_without_harm() -> None:
    with running(make_config(checks=ONLY_CONFIG)) as server:
        assert server.port is not None
        huge_header = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 100_000 + b"\r\n\r\n"
        answer = _raw(server.port, huge_header)
        assert not answer.startswith(b"HTTP/1.1 200")
        big_body = (
            b"GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n" + b"b" * 65536
        )
        answer = _raw(server.port, big_body)
        assert not answer.startswith(b"HTTP/1.1 200")
        garbage = _raw(server.port, b"\x00\xff garbage\r\n\r\n")
        assert not garbage.startswith(b"HTTP/1.1 200")
        # the server is still fine
        assert request(server, "/health").status == 200


def test_port_in_use_is_a_clear_startup_error() -> None:
    sock, port = occupied_port()
    try:
        server = HealthServer(make_config(checks=ONLY_CONFIG, port=port), make_ctx())
        with pytest.raises(HealthPortInUse, match=f"port {port} .* already in use"):
            server.start()
        server.stop()  # safe after a failed start
    finally:
        sock.close()


def test_port_clash_fails_the_run_before_the_engine_runs(tmp_path: Any) -> None:
    sock, port = occupied_port()
    BeatingEngine.seen.clear()
    cfg = {
        "mode": "paper",
        "runner": {"main": "engine", "stop_timeout": 2, "write_outputs": False},
        "health": {"_target_": "atb.health.server.HealthServer", "port": port, "checks": []},
        "engine": {"_target_": "health_helpers.BeatingEngine", "needs": ["health"], "beats": 1},
    }
    try:
        runner = Runner(validate_config(cfg), RunContext(mode="paper"))
        with pytest.raises(NodeError, match="already in use") as info:
            runner.run()
        assert info.value.node == "health" and info.value.phase == "start"
        assert info.value.exit_code != 0
        assert BeatingEngine.seen == []
    finally:
        sock.close()


def test_runs_as_a_run_graph_node() -> None:
    BeatingEngine.seen.clear()
    cfg = {
        "mode": "paper",
        "runner": {"main": "engine", "stop_timeout": 2, "write_outputs": False},
        "health": {"_target_": "atb.health.server.HealthServer", "port": 0, "checks": ONLY_CONFIG},
        "engine": {"_target_": "health_helpers.BeatingEngine", "needs": ["health"], "beats": 2},
    }
    runner = Runner(validate_config(cfg), RunContext(mode="paper"))
    assert runner.run() == "done"
    assert BeatingEngine.seen[0]["status"] == "healthy"
    assert BeatingEngine.seen[0]["loop"]["iterations"] == 2
    # stopped with the run: the port is free again
    port = runner.nodes["health"].port
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_port_env_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_port(8000, {}) == (8000, "config:health.port")
    assert resolve_port(8000, {"HEALTH_CHECK_PORT": "9001"}) == (9001, "env:HEALTH_CHECK_PORT")
    both = {"PORT": "9000", "HEALTH_CHECK_PORT": "9001"}
    assert resolve_port(8000, both) == (9000, "env:PORT")
    with pytest.raises(ValueError, match="PORT='nine'"):
        resolve_port(8000, {"PORT": "nine"})
    with pytest.raises(ValueError, match="0-65535"):
        resolve_port(8000, {"PORT": "70000"})

    sock, port = occupied_port()
    sock.close()  # a port that was free a moment ago
    monkeypatch.setenv("PORT", str(port))
    with running(make_config(checks=ONLY_CONFIG, port=1)) as server:
        assert server.port == port
        assert server.port_source == "env:PORT"
        assert request(server, "/health").status == 200
        config = request(server, "/status").json()["components"]["config"]
        assert "PORT" in config["providers"]["env_vars"]
        assert "env vars" in config["contributors"]


def test_config_validation_names_the_bad_key() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        HealthServerConfig.model_validate(
            {
                "_target_": "atb.health.server.HealthServer",
                "checks": [
                    {"_target_": "atb.health.checks.ConfigCheck"},
                    {"_target_": "atb.health.checks.DatabaseCheck", "slow": 3},
                ],
            }
        )
    assert any("checks.1.slow: unknown key" in line for line in format_validation_error(info.value))
    with pytest.raises(ConfigError, match=r"health.checks.0._target_: cannot import"):
        validate_config(
            {
                "runner": {"main": "health"},
                "health": {
                    "_target_": "atb.health.server.HealthServer",
                    "checks": [{"_target_": "atb.health.checks.NoSuchCheck"}],
                },
            }
        )
    with pytest.raises(ConfigError, match=r"health\.port"):
        validate_config(
            {
                "runner": {"main": "health"},
                "health": {"_target_": "atb.health.server.HealthServer", "port": 70000},
            }
        )


def test_default_checks_cover_every_component() -> None:
    config = HealthServerConfig.model_validate({"_target_": "atb.health.server.HealthServer"})
    server = HealthServer(config, make_ctx())
    assert [c.name for c in server.checks] == [
        "config", "database", "exchange", "journal", "data", "alerts",
    ]  # fmt: skip
    assert (config.host, config.port, config.degraded_status_code) == ("auto", 8000, 200)


def test_disabled_checks_are_left_out() -> None:
    config = make_config(
        checks=[
            {"_target_": "atb.health.checks.ConfigCheck"},
            {"_target_": "atb.health.checks.ExchangeCheck", "enabled": False},
        ]
    )
    with running(config) as server:
        assert list(request(server, "/status").json()["components"]) == ["config"]


def test_the_trading_process_keeps_its_gil_switch_interval() -> None:
    """The HTTP loop runs in the server process: nothing here needs a shorter interval."""
    import sys

    before = sys.getswitchinterval()
    with running(make_config(checks=ONLY_CONFIG, gil_switch_interval=0.0002)) as server:
        assert sys.getswitchinterval() == pytest.approx(before)
        assert request(server, "/health").status == 200
