"""The two default rules that could never fire (issue 15) fire and resolve in real sessions.

- `database_connection_failures`: a paper session on a real PostgreSQL cluster; the cluster
  is stopped (the heartbeat writer's next write fails: `db_connection_failed`) and started
  again (`db_reconnected`: resolved).
- `max_drawdown_breach`: a paper session whose `live.max_drawdown` is forced down to 0.5 %,
  so the first losing stretch breaches it (`max_drawdown_breach`) and the next equity peak
  resolves it (`drawdown_recovered`).
Alerts go to a real webhook receiver on 127.0.0.1.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from alert_helpers import Receiver
from atb_testkit.pgtemp import TempPostgres, find_pg_bin

pytestmark = [pytest.mark.e2e]

QUICK = [
    "mode=paper", "exchange=replay", "exchange.step=true", "health=off",
    "strategy=sma_crossover", "strategy.fast=3", "strategy.slow=8",
    "live.check_interval=0.05", "live.cooldown=0.5", "live.cooldown_max=1",
    "live.max_consecutive_failures=1000", "live.max_iterations=100000",
    "alerts.tick=0.05", "alerts.rules.4.silence=120",  # loop_stalled is not under test
]  # fmt: skip


def start(tmp: Path, receiver: Receiver, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATB_DB", "ALERT_"))}
    env.update({"ATB_OUTPUT_DIR": str(tmp / "outputs"), "ALERT_WEBHOOK_URL": receiver.url()})
    return subprocess.Popen(
        [sys.executable, "-m", "atb", *QUICK, *args], cwd=tmp, env=env, text=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def wait_for(receiver: Receiver, proc: subprocess.Popen[str], rule: str, status: str,
             timeout: float = 90) -> dict[str, object]:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        for alert in receiver.alerts:
            if alert["rule"] == rule and alert["status"] == status:
                return alert
        time.sleep(0.05)
    proc.kill()
    _out, err = proc.communicate()
    raise AssertionError(f"no {rule} {status} alert: {receiver.alerts}\n{err[-3000:]}")


def wait_for_heartbeats(url: str, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            try:
                with engine.connect() as conn:
                    n = conn.execute(text("SELECT max(iterations) FROM run_heartbeats")).scalar()
                if n and n >= 5:
                    return
            except Exception:  # not migrated yet
                pass
            time.sleep(0.2)
        raise AssertionError("the session wrote no heartbeat")
    finally:
        engine.dispose()


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.mark.postgres
def test_database_connection_failures_fires_and_resolves(
    tmp_path: Path, receiver: Receiver
) -> None:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    pg = TempPostgres()
    pg.init()
    pg.start()
    proc = None
    try:
        url = pg.create_database("rules")
        proc = start(
            tmp_path, receiver, "db=postgres", f"db.url={url}", "db.connect_timeout=2",
            f"journal.spill_path={tmp_path / 'spill.jsonl'}",
        )  # fmt: skip
        wait_for_heartbeats(url, proc)  # the session is up and writing heartbeats
        assert not [a for a in receiver.alerts if a["rule"] == "database_connection_failures"]
        pg.stop("immediate")
        fired = wait_for(receiver, proc, "database_connection_failures", "firing")
        assert fired["severity"] == "error"
        pg.start()
        wait_for(receiver, proc, "database_connection_failures", "resolved")
    finally:
        if proc is not None:
            stop(proc)
        pg.destroy()


def test_max_drawdown_breach_fires_and_resolves(tmp_path: Path, receiver: Receiver) -> None:
    proc = start(
        tmp_path, receiver, f"db.url=sqlite:///{tmp_path / 'atb.db'}",
        "live.max_drawdown=0.005", "live.fee=0", "live.slippage=0", "live.check_interval=0.02",
    )  # fmt: skip
    try:
        fired = wait_for(receiver, proc, "max_drawdown_breach", "firing")
        assert fired["severity"] == "critical"
        wait_for(receiver, proc, "max_drawdown_breach", "resolved")
    finally:
        stop(proc)
