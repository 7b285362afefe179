"""The monitoring model's loop status after SIGINT and after kill -9 (no browser).

Issue 15: after SIGINT with a position open the page kept showing "running" (the run row was
re-read only when no position was open); after kill -9 a fresh page said "running".
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from atb.dashboards.monitoring.model import MonitoringModel, sessions
from atb.dashboards.readonly import dispose_all, readonly_engine

pytestmark = pytest.mark.e2e  # runs the CLI in a subprocess

INTERVAL = 0.5


def start(tmp: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "ATB_OUTPUT_DIR": str(tmp / "outputs")}
    return subprocess.Popen(
        [sys.executable, "-m", "atb", "mode=paper", "exchange=replay", "exchange.step=true",
         "health=off", "alerts=off", "strategy=sma_crossover", "strategy.fast=2",
         "strategy.slow=3", f"live.check_interval={INTERVAL}",
         f"db.url=sqlite:///{tmp / 'atb.db'}"],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_running(tmp: Path, proc: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            with sqlite3.connect(tmp / "atb.db") as conn:
                row = conn.execute(
                    "SELECT run_id, iterations FROM run_heartbeats ORDER BY started_at DESC"
                ).fetchone()
        except sqlite3.OperationalError:
            row = None
        if row and row[1] >= 3:
            return str(row[0])
        time.sleep(0.2)
    pytest.fail("no heartbeat")


def health_until(model: MonitoringModel, wanted: str, timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if model.poll().kpis.health == wanted:
            return time.monotonic() - t0
        time.sleep(0.1)
    pytest.fail(f"never {wanted}: {model.poll().kpis.health}")


@pytest.mark.parametrize("how", ["sigint", "kill9"])
def test_loop_status_follows_the_process(how: str, tmp_path: Path) -> None:
    proc = start(tmp_path)
    try:
        run_id = wait_running(tmp_path, proc)
        model = MonitoringModel(readonly_engine(f"sqlite:///{tmp_path / 'atb.db'}"), run_id)
        assert model.load().kpis.health == "running"
        if how == "sigint":
            proc.send_signal(signal.SIGINT)
            health_until(model, "stopped", timeout=30)
        else:
            proc.kill()
            proc.wait(10)
            took = health_until(model, "not running", timeout=30)
            # silence limit: max(3 × interval, floor 2 s + writer lag 1 s) after the last beat
            assert took <= 3.0 + 0.5, took
            assert "no heartbeat since" in model.poll().kpis.health_reason
            fresh = MonitoringModel(model.engine, run_id).load().kpis
            assert fresh.health == "not running"
            # The session list reads the same heartbeat: the run row's "running" is not shown.
            (listed,) = [r for r in sessions(model.engine, None) if r["id"] == run_id]
            assert listed["status"] == "not running"
    finally:
        if proc.poll() is None:
            proc.kill()
        dispose_all()
