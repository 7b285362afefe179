"""The exchange component against the Binance-compatible test exchange (real ccxt over HTTP)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from atb_testkit.fake_binance import FakeBinance
from health_helpers import PROBES, make_config, make_ctx, request, running

from atb.runtime.context import ExchangeTarget

# Each test starts a process of its own (the health server, a session or the CLI): e2e.
pytestmark = pytest.mark.e2e

BINANCE = {"_target_": "atb.exchange.ccxt_exchange.CcxtExchange", "id": "binance", "sandbox": False}


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    server = FakeBinance()
    server.start()
    yield server
    server.stop()


def exchange_check(base_url: str | None, **kw: Any) -> dict[str, Any]:
    return {
        "_target_": "atb.health.checks.ExchangeCheck",
        "base_url": base_url,
        "ttl": 0,
        "timeout": 3.0,
        **kw,
    }


def beat() -> None:
    PROBES.heartbeat.start(interval=10)
    PROBES.heartbeat.beat()


def exchange_status(server: Any) -> tuple[int, dict[str, Any]]:
    resp = request(server, "/status")
    return resp.status, resp.json()["components"]["exchange"]


def test_reachable_exchange_reports_latency(fake: FakeBinance) -> None:
    ctx = make_ctx(exchange=ExchangeTarget.of({**BINANCE, "api_key": "***"}))
    with running(make_config(checks=[exchange_check(fake.url)]), ctx) as server:
        beat()
        code, exchange = exchange_status(server)
        assert code == 200
        assert exchange["status"] == "healthy"
        assert exchange["reachable"] is True
        assert exchange["exchange"] == "binance"
        assert 0 < exchange["latency_ms"] < 1000
        assert abs(exchange["clock_offset_ms"]) < 5000
        # a separate keyless client on one public endpoint: no markets load, nothing signed
        assert {r.path for r in fake.request_log} == {"/api/v3/time"}


def test_ping_method(fake: FakeBinance) -> None:
    ctx = make_ctx(exchange=ExchangeTarget.of(BINANCE))
    checks = [exchange_check(fake.url, method="ping")]
    with running(make_config(checks=checks), ctx) as server:
        beat()
        assert exchange_status(server)[1]["status"] == "healthy"
        assert fake.requests_to("/api/v3/ping")


def test_exchange_faults_are_visible(fake: FakeBinance) -> None:
    ctx = make_ctx(exchange=ExchangeTarget.of(BINANCE))
    with running(make_config(checks=[exchange_check(fake.url)]), ctx) as server:
        beat()
        fake.faults.add("http_503", path="/api/v3/time", times=None)
        code, exchange = exchange_status(server)
        assert code == 503
        assert exchange["status"] == "unhealthy"
        assert exchange["reachable"] is False
        assert exchange["error"] in {"ExchangeNotAvailable", "ExchangeError", "NetworkError"}
        fake.faults.clear()

        fake.faults.add("timeout", path="/api/v3/time", delay=5, times=1)
        t0 = time.monotonic()
        code, exchange = exchange_status(server)
        assert time.monotonic() - t0 < 4.5
        assert exchange["status"] == "unhealthy"
        assert exchange["error"] in {"timeout", "RequestTimeout"}
        fake.faults.clear()
        time.sleep(0.5)  # let the abandoned probe finish before the next scenario

        fake.faults.go_offline()
        code, exchange = exchange_status(server)
        assert code == 503 and exchange["reachable"] is False
        assert exchange["error"] in {"NetworkError", "ExchangeNotAvailable", "RequestTimeout"}
        ready = request(server, "/readyz")
        assert ready.status == 503 and ready.json()["checks"]["exchange"] == "unhealthy"
        assert request(server, "/health").status == 200  # liveness is about the loop only

        fake.faults.go_online()
        time.sleep(0.5)
        code, exchange = exchange_status(server)
        assert code == 200 and exchange["status"] == "healthy"


def test_unreachable_network_is_reported_not_raised() -> None:
    # A closed local port stands in for "no network": connection refused, fast.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    ctx = make_ctx(exchange=ExchangeTarget.of(BINANCE))
    with running(make_config(checks=[exchange_check(dead)]), ctx) as server:
        beat()
        code, exchange = exchange_status(server)
        assert code == 503
        assert exchange == {**exchange, "status": "unhealthy", "reachable": False}
        assert exchange["error"] in {"NetworkError", "ExchangeNotAvailable"}


def test_exchange_can_be_configured_as_only_degrading(fake: FakeBinance) -> None:
    ctx = make_ctx(exchange=ExchangeTarget.of(BINANCE))
    checks = [exchange_check(fake.url, failure_status="degraded")]
    fake.faults.go_offline()
    with running(make_config(checks=checks), ctx) as server:
        beat()
        code, exchange = exchange_status(server)
        assert (code, exchange["status"]) == (200, "degraded")


def test_loop_view_of_the_exchange_is_shown(fake: FakeBinance) -> None:
    PROBES.register("exchange", lambda: {"consecutive_errors": 2, "last_error": "RequestTimeout"})
    ctx = make_ctx(exchange=ExchangeTarget.of(BINANCE))
    with running(make_config(checks=[exchange_check(fake.url)]), ctx) as server:
        beat()
        exchange = exchange_status(server)[1]
        assert exchange["loop_view"] == {"consecutive_errors": 2, "last_error": "RequestTimeout"}


def test_exchange_from_run_config_base_url(fake: FakeBinance) -> None:
    ctx = make_ctx(exchange=ExchangeTarget.of({**BINANCE, "base_url": fake.url}))
    with running(make_config(checks=[exchange_check(None)]), ctx) as server:
        beat()
        assert exchange_status(server)[1]["status"] == "healthy"
