"""The server process and the trading process watch each other: status never lies.

- the trading process killed (SIGKILL): the server process exits, the port closes;
- the trading process frozen (SIGSTOP): /health turns 503 within `publish_timeout`;
- the server process killed: the run logs it, restarts it on the same port and counts the
  restart in /status; past `max_restarts` the port closes.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from atb_testkit.waiting import wait_for_process
from health_helpers import PROBES, make_config, request, running
from loguru import logger

# Each test starts a process of its own (the health server, a session or the CLI): e2e.
pytestmark = pytest.mark.e2e

ONLY_CONFIG = [{"_target_": "atb.health.checks.ConfigCheck"}]

# A trading process of its own: a health node and a loop beating every 50 ms.
TRADER = """
import sys, time
sys.path.insert(0, {helpers!r})
from health_helpers import PROBES, make_config, make_ctx
from atb.health.server import HealthServer

server = HealthServer(make_config(checks=[], publish_timeout=1.0), make_ctx())
server.start()
PROBES.heartbeat.start(interval=0.05)
print(server.port, server.pid, flush=True)
while True:
    PROBES.heartbeat.beat()
    time.sleep(0.05)
"""


def raw_get(port: int, path: str) -> tuple[int, dict[str, Any]]:
    """A GET that does not ask the node to publish first (see health_helpers.request)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie still answers kill(0); its state letter says it is dead.
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().split(") ")[-1].startswith("Z")


def until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture
def trader() -> Iterator[tuple[subprocess.Popen[str], int, int]]:
    code = TRADER.format(helpers=str(Path(__file__).parent))
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stdout is not None
        line = wait_for_process(proc, proc.stdout.readline, 60, "the trader's port", lambda: "")
        port, pid = (int(x) for x in line.split())
        yield proc, port, pid
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(10)


def test_state_arrives_by_itself_within_the_publish_interval() -> None:
    with running(make_config(checks=ONLY_CONFIG, publish_interval=0.05)) as server:
        assert server.port is not None
        PROBES.heartbeat.start(interval=1.0)
        PROBES.heartbeat.beat()
        PROBES.heartbeat.beat()
        body = until(
            lambda: (b := raw_get(server.port, "/health")[1])["loop"]["iterations"] == 2 and b,
            5,
            "the published beats",
        )
        assert body["status"] == "healthy"


def test_a_killed_trading_process_takes_the_port_with_it(
    trader: tuple[subprocess.Popen[str], int, int],
) -> None:
    proc, port, pid = trader
    assert until(lambda: raw_get(port, "/health")[0] == 200, 10, "a healthy loop")
    proc.kill()  # SIGKILL: no stop(), no goodbye
    proc.wait(10)
    until(lambda: port_closed(port), 5, "the port to close")
    until(lambda: pid_gone(pid), 5, "the server process to exit")


def test_a_frozen_trading_process_reads_as_stalled(
    trader: tuple[subprocess.Popen[str], int, int],
) -> None:
    proc, port, _ = trader
    assert until(lambda: raw_get(port, "/health")[0] == 200, 10, "a healthy loop")
    os.kill(proc.pid, signal.SIGSTOP)
    body = until(lambda: (r := raw_get(port, "/health"))[0] == 503 and r[1], 10, "a 503")
    assert body["loop"]["state"] == "stalled"
    assert "sent no state" in body["reason"] or "has not beaten" in body["reason"]
    assert raw_get(port, "/livez")[0] == 503
    os.kill(proc.pid, signal.SIGCONT)
    until(lambda: raw_get(port, "/health")[0] == 200, 10, "healthy again after SIGCONT")


def test_a_dead_server_process_is_logged_counted_and_restarted() -> None:
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="ERROR")
    try:
        with running(make_config(checks=ONLY_CONFIG)) as server:
            first = server.pid
            assert first is not None and server.port is not None
            os.kill(first, signal.SIGKILL)
            until(lambda: server.pid != first and server.stats(), 60, "a new server process")
            PROBES.heartbeat.start(interval=1.0)
            PROBES.heartbeat.beat()
            status = request(server, "/status").json()
            assert status["server"]["restarts"] == 1
            assert status["server"]["pid"] == server.pid
            assert "exit code -9" in status["server"]["last_exit"]
            assert request(server, "/health").status == 200
    finally:
        logger.remove(sink)
    assert any("health server process" in line and "died" in line for line in lines)


def test_past_max_restarts_the_port_closes() -> None:
    with running(make_config(checks=ONLY_CONFIG, max_restarts=0)) as server:
        assert server.pid is not None and server.port is not None
        port = server.port
        os.kill(server.pid, signal.SIGKILL)
        until(lambda: port_closed(port), 10, "the port to close")
