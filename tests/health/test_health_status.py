"""/status: components, caching, timeouts, concurrency, probe-backed checks, redaction."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from health_helpers import (
    PROBES,
    check_runs,
    counting,
    make_config,
    make_ctx,
    release_checks,
    request,
    running,
)

# Each test starts a process of its own (the health server, a session or the CLI): e2e.
pytestmark = pytest.mark.e2e


def beat() -> None:
    PROBES.heartbeat.start(interval=10)
    PROBES.heartbeat.beat()


def test_status_payload_shape() -> None:
    with running(make_config(checks=[{"_target_": "atb.health.checks.ConfigCheck"}])) as server:
        beat()
        resp = request(server, "/status")
        assert resp.status == 200
        body = resp.json()
        assert body["status"] == "healthy"
        assert body["service"] == "atb"
        assert body["run"]["mode"] == "paper" and body["run"]["strategy"] == "ml_basic"
        assert body["loop"]["state"] == "running"
        config = body["components"]["config"]
        assert config["status"] == "healthy"
        assert config["contributors"] == ["defaults", "config files", "command-line overrides"]
        assert config["providers"]["command_line"] == ["health=on", "mode=paper"]
        assert "reasons" not in body


@pytest.mark.parametrize(
    ("result", "code_cfg", "expected_code"),
    [("degraded", 200, 200), ("degraded", 503, 503), ("unhealthy", 200, 503)],
)
def test_status_codes(result: str, code_cfg: int, expected_code: int) -> None:
    config = make_config(checks=[counting("x", result=result)], degraded_status_code=code_cfg)
    with running(config) as server:
        beat()
        resp = request(server, "/status")
        assert resp.status == expected_code
        assert resp.json()["status"] == result
        assert resp.json()["reasons"] == [f"x: {result}"]


def test_results_are_cached_for_the_ttl() -> None:
    config = make_config(checks=[counting("x")], cache_ttl=0.5)
    with running(config) as server:
        beat()
        for _ in range(20):
            assert request(server, "/status").status == 200
        assert check_runs("x") == 1
        time.sleep(0.6)
        request(server, "/status")
        assert check_runs("x") == 2


def test_concurrent_requests_share_one_run() -> None:
    config = make_config(checks=[counting("slow", sleep=0.3)], cache_ttl=10)
    with running(config) as server:
        beat()
        results: list[int] = []

        def hit() -> None:
            results.append(request(server, "/status").status)

        threads = [threading.Thread(target=hit) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * 10
        assert check_runs("slow") == 1


def test_checks_run_concurrently() -> None:
    checks = [counting(f"c{i}", sleep=0.4) for i in range(4)]
    with running(make_config(checks=checks)) as server:
        beat()
        resp = request(server, "/status")
        assert resp.status == 200
        assert resp.elapsed < 1.0  # 4 × 0.4 s if they ran one after another


def test_a_hung_check_is_reported_within_its_timeout_and_not_restarted() -> None:
    checks = [counting("hung", sleep=30, timeout=0.3, ttl=0.1), counting("ok")]
    with running(make_config(checks=checks)) as server:
        beat()
        resp = request(server, "/status")
        assert resp.elapsed < 1.5
        body = resp.json()
        hung = body["components"]["hung"]
        assert hung["status"] == "degraded" and hung["error"] == "timeout"
        assert body["components"]["ok"]["status"] == "healthy"
        # /health never waits on checks
        assert request(server, "/health").elapsed < 0.2
        time.sleep(0.2)  # past the TTL: the hung run is still in flight, so it is not repeated
        resp = request(server, "/status")
        assert resp.elapsed < 0.5
        assert resp.json()["components"]["hung"]["error"] == "timeout"
        assert check_runs("hung") == 1
        # once it finishes, its real result is used
        release_checks()
        time.sleep(0.2)
        assert request(server, "/status").json()["components"]["hung"]["status"] == "healthy"


def test_unhealthy_dependency_fails_readiness_not_liveness() -> None:
    checks = [counting("dep", fail=True, failure_status="unhealthy"), counting("opt", fail=True)]
    with running(make_config(checks=checks)) as server:
        beat()
        assert request(server, "/livez").status == 200
        assert request(server, "/health").status == 200
        ready = request(server, "/readyz")
        assert ready.status == 503
        assert ready.json()["reasons"] == ["dep: ConnectionError"]
        assert ready.json()["checks"] == {"dep": "unhealthy", "opt": "degraded"}


def test_failures_name_the_error_and_hide_secrets() -> None:
    ctx = make_ctx(secrets=frozenset({"s3cr3t-api-key"}))
    PROBES.register(
        "journal",
        lambda: {"queue_depth": 1, "note": "key=s3cr3t-api-key", "api_key": "whatever"},
    )
    checks = [counting("db", fail=True), {"_target_": "atb.health.checks.JournalCheck"}]
    with running(make_config(checks=checks), ctx) as server:
        beat()
        resp = request(server, "/status")
        text = resp.body.decode()
        assert "hunter2" not in text and "s3cr3t-api-key" not in text and "whatever" not in text
        db = resp.json()["components"]["db"]
        assert db["error"] == "ConnectionError"
        assert db["message"].startswith("boom at postgresql://atb:")  # password masked


def test_journal_component() -> None:
    state: dict[str, Any] = {"queue_depth": 3, "spilled": 0, "written": 120, "last_error": None}
    PROBES.register("journal", lambda: dict(state))
    checks = [{"_target_": "atb.health.checks.JournalCheck", "ttl": 0, "max_queue_depth": 100}]
    with running(make_config(checks=checks)) as server:
        beat()
        journal = request(server, "/status").json()["components"]["journal"]
        assert journal["status"] == "healthy"
        assert (journal["queue_depth"], journal["written"]) == (3, 120)
        state.update(last_error="OperationalError: connection refused", spilled=7)
        journal = request(server, "/status").json()["components"]["journal"]
        assert journal["status"] == "degraded"
        assert journal["spilled"] == 7
        assert journal["last_error"].startswith("OperationalError")
        state.update(last_error=None, queue_depth=500)
        journal = request(server, "/status").json()["components"]["journal"]
        assert journal["status"] == "degraded" and "queue depth" in journal["reason"]
        state.update(queue_depth=0, status="failing")  # a provider may state its own status
        journal = request(server, "/status").json()["components"]["journal"]
        assert journal["status"] == "degraded"


def test_data_component_candle_age() -> None:
    newest = {"at": time.time() - 60}
    PROBES.register("data", lambda: {"symbol": "BTCUSDT", "newest_candle_at": newest["at"]})
    checks = [{"_target_": "atb.health.checks.DataCheck", "ttl": 0}]
    with running(make_config(checks=checks), make_ctx(timeframe="1m")) as server:
        beat()
        data = request(server, "/status").json()["components"]["data"]
        assert data["status"] == "healthy"
        assert 59 <= data["newest_candle_age_seconds"] < 70
        assert data["max_candle_age_seconds"] == 120  # 2 × 1m
        newest["at"] = time.time() - 600
        data = request(server, "/status").json()["components"]["data"]
        assert data["status"] == "degraded"
        assert "newest candle is" in data["reason"]


def test_alerts_component() -> None:
    channels = {"console": {"state": "ok"}, "webhook": {"state": "ok", "sent": 3}}
    PROBES.register("alerts", lambda: {"channels": json.loads(json.dumps(channels))})
    checks = [{"_target_": "atb.health.checks.AlertsCheck", "ttl": 0}]
    with running(make_config(checks=checks)) as server:
        beat()
        alerts = request(server, "/status").json()["components"]["alerts"]
        assert alerts["status"] == "healthy"
        assert alerts["channels"]["webhook"]["sent"] == 3
        channels["webhook"]["state"] = "failing"
        alerts = request(server, "/status").json()["components"]["alerts"]
        assert alerts["status"] == "degraded"
        assert alerts["reason"] == "failing channels: webhook"


def test_components_without_providers_are_skipped() -> None:
    with running(make_config()) as server:  # the six default checks
        beat()
        body = request(server, "/status").json()
        assert set(body["components"]) == {
            "config", "database", "exchange", "journal", "data", "alerts",
        }  # fmt: skip
        for name in ("database", "journal", "data", "alerts"):
            assert body["components"][name]["status"] == "skipped"
        # exchange=replay (make_ctx) is not a ccxt exchange: nothing to reach
        exchange = body["components"]["exchange"]
        assert exchange["status"] == "skipped" and "replay" in exchange["detail"]
        assert body["status"] == "healthy"


def test_a_broken_provider_is_a_failed_check_not_a_broken_server() -> None:
    def broken() -> dict[str, Any]:
        raise RuntimeError("provider exploded")

    PROBES.register("alerts", broken)
    checks = [{"_target_": "atb.health.checks.AlertsCheck"}]
    with running(make_config(checks=checks)) as server:
        beat()
        alerts = request(server, "/status").json()["components"]["alerts"]
        assert alerts["status"] == "degraded" and alerts["error"] == "RuntimeError"
        assert request(server, "/metrics").status == 200
