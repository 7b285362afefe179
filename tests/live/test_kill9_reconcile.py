"""`kill -9` with an order in flight: the next session settles it, nothing stays pending.

Real subprocesses (`python -m atb mode=paper|live ...` against FakeBinance) killed with
SIGKILL at the moment an order is pending:

- paper: the order waits for the next bar's open when the process dies. It cannot fill once
  its session is gone, so the next session cancels it with a reason (`order_reconciled`);
- live: the order request is on the wire (FakeBinance holds it 3 s, then fills it) when the
  process dies. The write-ahead record has its client order id; the next session looks it
  up on the exchange, records it filled and books the position, without sending it again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from atb_testkit import FakeBinance
from atb_testkit.outage import wait_for
from live_helpers import QUICK, SMA, Advancer, Session, fake_args, fake_env

pytestmark = pytest.mark.e2e

LIVE = ["mode=live", "live.i_understand_the_risks=true"]


def _spawn(
    session: Session, args: list[str], env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BINANCE_", "PORT", "HEALTH_CHECK_PORT", "ATB_DB"))
    }
    full_env.update({"ATB_OUTPUT_DIR": str(session.tmp / "outputs"), **(env or {})})
    return subprocess.Popen(
        [sys.executable, "-m", "atb", *args, f"db.url={session.db_url}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=full_env,
        cwd=session.tmp,
    )  # fmt: skip


def _pending(session: Session) -> int:
    if not session.db_path.exists():
        return 0
    try:
        return int(session.query("select count(*) from orders where status='pending'")[0][0])
    except Exception:  # the tables are being created
        return 0


def _catch_pending(session: Session, fake: FakeBinance, proc: subprocess.Popen[str]) -> None:
    """Freeze the candles while an order is pending (no next bar: it stays pending)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        wait_for(lambda: _pending(session) > 0 or proc.poll() is not None, 90, "a pending order")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        fake.faults.freeze_candles()
        time.sleep(0.5)  # the record log reaches the DB within ~0.1 s
        if _pending(session) > 0:
            return
        fake.faults.unfreeze_candles()  # it filled on the bar fetched meanwhile: next one
    raise AssertionError("no order caught pending")


def _kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL


def _records_dir(session: Session) -> Path:
    return session.tmp / "records"


def _paper_args(session: Session, fake: FakeBinance) -> list[str]:
    return ["mode=paper", *SMA, *QUICK, *fake_args(fake),
            f"live.record_log_dir={_records_dir(session)}"]  # fmt: skip


def _kill_paper_mid_order(
    session: Session, fake: FakeBinance, args: list[str]
) -> tuple[str, list[Any]]:
    """Start a paper session and kill -9 it while an order is pending: (its run id, the
    pending orders' numbers). Candles flow again afterwards, for the restart."""
    with Advancer(fake):
        proc = _spawn(session, args)
        try:
            _catch_pending(session, fake, proc)
            _kill(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
    (killed_run,) = session.query("select id from runs")[0]
    pending = session.query(
        "select order_no from orders where run_id=? and status='pending'", killed_run
    )
    assert pending, "the kill did not catch an order pending"
    fake.faults.unfreeze_candles()
    return killed_run, pending


def _kill_live_mid_request(session: Session, fake: FakeBinance, args: list[str]) -> str:
    """Start a live session whose first order request the exchange holds, kill -9 it while
    that request is on the wire, and wait for the exchange to place it: the run's id."""
    with Advancer(fake):
        proc = _spawn(session, args, env=fake_env(fake))
        try:
            wait_for(
                lambda: _pending(session) > 0 or proc.poll() is not None, 90, "a pending order"
            )
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            fake.faults.freeze_candles()
            time.sleep(0.5)
            _kill(proc)
        finally:
            if proc.poll() is None:
                proc.kill()
    wait_for(lambda: len(fake.orders) == 1, 10, "the held order placed by the exchange")
    (killed_run,) = session.query("select id from runs")[0]
    return str(killed_run)


def test_paper_order_pending_at_kill9_is_cancelled_with_a_reason(
    session: Session, fake: FakeBinance
) -> None:
    args = _paper_args(session, fake)
    killed_run, pending = _kill_paper_mid_order(session, fake, args)

    second = session.run(*args, "live.max_iterations=3")
    assert second.returncode == 0, second.stderr[-3000:]
    assert _pending(session) == 0, "an order was left pending"
    for (order_no,) in pending:
        ((status, note),) = session.query(
            "select status, note from orders where run_id=? and order_no=?", killed_run, order_no
        )
        assert status == "cancelled" and "cancelled at resume" in note
    ((status, error),) = session.query("select status, error from runs where id=?", killed_run)
    assert status == "failed" and "interrupted" in error
    reconciled = [json.loads(d) for _, _, d in session.events("order_reconciled")]
    assert {(r["run_id"], r["outcome"]) for r in reconciled} == {(killed_run, "cancelled")}
    assert not list(_records_dir(session).glob("records-*.jsonl"))


def test_live_order_in_flight_at_kill9_is_looked_up_by_client_id_and_booked_once(
    session: Session, fake: FakeBinance
) -> None:
    # The first order request is held 3 s by the exchange, then placed: the kill lands
    # while it is on the wire.
    fake.faults.add("timeout", path="/api/v3/order", method="POST", delay=3.0, times=1)
    args = [*LIVE, *SMA, *QUICK, *fake_args(fake), f"live.record_log_dir={_records_dir(session)}"]
    killed_run = _kill_live_mid_request(session, fake, args)
    ((order_no, cid_note),) = session.query(
        "select order_no, note from orders where run_id=? and status='pending'", killed_run
    )
    placed = fake.orders[0]
    assert placed.client_order_id in cid_note

    second = session.run(*args, "live.max_iterations=3", env=fake_env(fake))
    assert second.returncode == 0, second.stderr[-3000:]
    assert _pending(session) == 0
    assert len(fake.orders) == 1, "the order was sent again"
    ((status, ex_id, note),) = session.query(
        "select status, exchange_order_id, note from orders where run_id=? and order_no=?",
        killed_run,
        order_no,
    )
    assert status == "filled" and ex_id == str(placed.order_id)
    assert "booked by run" in note
    # The new session's books are the exchange's.
    ((metrics,),) = session.query(
        "select metrics from runs where id != ? order by started_at desc limit 1", killed_run
    )
    state = json.loads(metrics)["state"]
    held = float(fake.balances()["BTC"].free)
    assert (state["position"] or {}).get("qty", 0.0) == pytest.approx(held, abs=1e-6)
    assert float(fake.balances()["USDT"].free) == pytest.approx(state["cash"], abs=0.5)
    outcomes = [json.loads(d)["outcome"] for _, _, d in session.events("order_reconciled")]
    assert outcomes == ["filled"]


def test_paper_order_pending_at_kill9_is_cancelled_also_without_resume(
    session: Session, fake: FakeBinance
) -> None:
    args = _paper_args(session, fake)
    killed_run, pending = _kill_paper_mid_order(session, fake, args)

    second = session.run(*args, "live.max_iterations=3", "live.resume=false")
    assert second.returncode == 0, second.stderr[-3000:]
    assert _pending(session) == 0, "an order was left pending"
    for (order_no,) in pending:
        ((status, note),) = session.query(
            "select status, note from orders where run_id=? and order_no=?", killed_run, order_no
        )
        assert status == "cancelled" and "cancelled at start by run" in note
    ((status, error),) = session.query("select status, error from runs where id=?", killed_run)
    assert status == "failed" and "interrupted" in error
    ((metrics,),) = session.query("select metrics from runs where id != ?", killed_run)
    assert json.loads(metrics)["resumed_from"] is None  # a fresh session all the same


def test_live_order_in_flight_at_kill9_is_recorded_not_booked_without_resume(
    session: Session, fake: FakeBinance
) -> None:
    fake.faults.add("timeout", path="/api/v3/order", method="POST", delay=3.0, times=1)
    args = [*LIVE, *SMA, *QUICK, *fake_args(fake), f"live.record_log_dir={_records_dir(session)}"]
    killed_run = _kill_live_mid_request(session, fake, args)
    ((order_no,),) = session.query(
        "select order_no from orders where run_id=? and status='pending'", killed_run
    )
    placed = fake.orders[0]

    second = session.run(*args, "live.max_iterations=3", "live.resume=false", env=fake_env(fake))
    assert second.returncode == 0, second.stderr[-3000:]
    assert _pending(session) == 0
    assert len(fake.orders) == 1, "the order was sent again"
    ((status, ex_id, note),) = session.query(
        "select status, exchange_order_id, note from orders where run_id=? and order_no=?",
        killed_run,
        order_no,
    )
    assert status == "filled" and ex_id == str(placed.order_id)
    assert "live.resume=false" in note and "not booked" in note
    # The new session did not take over the old books: no position, its own cash.
    ((metrics,),) = session.query("select metrics from runs where id != ?", killed_run)
    state = json.loads(metrics)["state"]
    assert state["position"] is None
    assert state["cash"] == pytest.approx(float(fake.balances()["USDT"].free), abs=0.5)
    reconciled = [json.loads(d) for _, _, d in session.events("order_reconciled")]
    assert [(r["outcome"], r["booked"]) for r in reconciled] == [("filled", False)]
