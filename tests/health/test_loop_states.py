"""Every endpoint in every loop state: the README table "Loop states and endpoints", as tests.

The heartbeat is driven the way the live loop drives it (start, beat, fail, expect, stop);
the server is the real one over HTTP.
"""

from __future__ import annotations

import re
import time

import pytest
from health_helpers import PROBES, make_config, make_ctx, request, running

from atb.health.server import HealthServer
from atb.runtime.probes import MIN_SILENCE, silence_limit

# Each test starts a process of its own (the health server, a session or the CLI): e2e.
pytestmark = pytest.mark.e2e


ONLY_CONFIG = [{"_target_": "atb.health.checks.ConfigCheck"}]
ENDPOINTS = ("/livez", "/health", "/readyz", "/status")

# state -> HTTP codes of /livez, /health, /readyz, /status (the README table)
TABLE = {
    "starting": (200, 200, 503, 200),
    "running": (200, 200, 200, 200),
    "degraded": (200, 503, 503, 200),
    "stalled": (503, 503, 503, 503),
    "not_started": (503, 503, 503, 503),
    "stopping": (200, 503, 503, 503),
    "stopped": (503, 503, 503, 503),
}


def codes(server: HealthServer, state: str) -> tuple[int, ...]:
    got = []
    for path in ENDPOINTS:
        resp = request(server, path)
        body = resp.json()
        loop_state = body["loop"]["state"] if "loop" in body else None
        if path != "/readyz":
            assert loop_state == state, (path, body)
        got.append(resp.status)
    return tuple(got)


def metric_lines(server: HealthServer) -> str:
    return request(server, "/metrics").body.decode()


def loop_metrics(server: HealthServer) -> tuple[float, str]:
    """(atb_loop_up, the state whose atb_loop_state sample is 1)."""
    up, states = None, []
    for line in metric_lines(server).splitlines():
        if line.startswith("atb_loop_up{"):
            up = float(line.rsplit(" ", 1)[1])
        m = re.match(r'atb_loop_state\{.*state="(\w+)".*\} 1\.0$', line)
        if m:
            states.append(m.group(1))
    assert up is not None and len(states) == 1
    return up, states[0]


def test_floor_keeps_fast_intervals_from_false_alarms() -> None:
    assert silence_limit(0.05) == MIN_SILENCE
    assert silence_limit(60) == 180


def test_starting() -> None:
    with running(make_config(checks=ONLY_CONFIG)) as server:
        PROBES.heartbeat.start(interval=1.0)
        assert codes(server, "starting") == TABLE["starting"]
        assert request(server, "/readyz").json()["reasons"][0].startswith("loop:")


def test_running() -> None:
    with running(make_config(checks=ONLY_CONFIG)) as server:
        PROBES.heartbeat.start(interval=1.0)
        PROBES.heartbeat.beat()
        assert codes(server, "running") == TABLE["running"]
        assert loop_metrics(server) == (1.0, "running")


def test_degraded_ends_the_startup_grace_at_the_first_failed_fetch() -> None:
    # The issue: offline, /health answered 200 "starting" for ~2 minutes while every fetch
    # failed. Now the first failed fetch ends the grace: the loop is alive but not trading.
    with running(make_config(checks=ONLY_CONFIG, startup_grace=120)) as server:
        PROBES.heartbeat.start(interval=1.0)
        PROBES.heartbeat.fail("ExchangeUnavailable: binance fetch_ohlcv: connection refused")
        PROBES.heartbeat.expect(5.0)
        assert codes(server, "degraded") == TABLE["degraded"]
        assert loop_metrics(server) == (1.0, "degraded")
        body = request(server, "/health").json()
        assert body["status"] == "degraded"
        assert "connection refused" in body["reason"]
        status = request(server, "/status").json()
        assert status["status"] == "degraded" and status["loop"]["failures"] == 1
        # the cooldown the loop announced is part of the silence it is allowed
        assert status["loop"]["max_silence_seconds"] == pytest.approx(3.0 + 4.0)
        PROBES.heartbeat.beat()  # data is back
        assert codes(server, "running") == TABLE["running"]


def test_stalled() -> None:
    with running(make_config(checks=ONLY_CONFIG)) as server:
        PROBES.heartbeat.start(interval=0.05)
        PROBES.heartbeat.beat()
        time.sleep(0.3)  # 6 × interval: still inside the floor, not a stall
        assert codes(server, "running") == TABLE["running"]
        PROBES.heartbeat.last_pulse = time.monotonic() - MIN_SILENCE - 0.5
        assert codes(server, "stalled") == TABLE["stalled"]
        assert "has not beaten for" in request(server, "/health").json()["reason"]
        assert loop_metrics(server) == (0.0, "stalled")


def test_not_started() -> None:
    with running(make_config(checks=ONLY_CONFIG, startup_grace=0.2)) as server:
        PROBES.heartbeat.start(interval=1.0)
        time.sleep(0.3)
        assert codes(server, "not_started") == TABLE["not_started"]


def test_stopping() -> None:
    ctx = make_ctx()
    with running(make_config(checks=ONLY_CONFIG), ctx) as server:
        PROBES.heartbeat.start(interval=1.0)
        PROBES.heartbeat.beat()
        ctx.stop_event.set()
        assert codes(server, "stopping") == TABLE["stopping"]


def test_stopped() -> None:
    with running(make_config(checks=ONLY_CONFIG)) as server:
        PROBES.heartbeat.start(interval=1.0)
        PROBES.heartbeat.beat()
        PROBES.heartbeat.stop("finished")
        assert codes(server, "stopped") == TABLE["stopped"]
        assert "stopped (finished)" in request(server, "/health").json()["reason"]
        assert loop_metrics(server) == (0.0, "stopped")
