"""The session record log against a real database (SQLite and PostgreSQL): exactly once
however often a file is applied, a dead session's file replayed at the next start, and a
row the database refuses quarantined instead of blocking every later record."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from atb_testkit.secrets import leaks, registered
from db_helpers import SwitchableEngine, insert_run
from hypothesis import HealthCheck, given, settings
from sqlalchemy import text

from atb.db.record_ops import apply_ops, encode_op, log_path, replay_orphans
from atb.engine.record_log import RecordLog
from atb.logging.redaction import Redactor, get_redactor, set_redactor

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _bar(run_id: str, i: int, status: str = "filled") -> dict[str, Any]:
    order = {"run_id": run_id, "mode": "paper", "order_no": 1, "symbol": "BTCUSDT",
             "created_at": T0, "side": "buy", "kind": "entry", "order_type": "market",
             "reason": "signal", "status": status, "size": 1.0, "filled_at": None,
             "qty": None, "price": None, "fee": None, "position_no": None,
             "exchange_order_id": None, "note": None, "error_code": None}  # fmt: skip
    account = {"run_id": run_id, "mode": "paper", "time": T0 + timedelta(hours=i),
               "balance": 1.0, "equity": 1.0, "drawdown": 0.0, "position_qty": 0.0,
               "open_positions": 0, "exposure": 0.0}  # fmt: skip
    return {"orders": [order], "account": [account], "metrics": {"bars": i}}


def _count(db: Any, sql: str) -> int:
    with db.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_applying_the_same_ops_twice_stores_them_once(database: Any) -> None:
    insert_run(database, "r1")
    ops = [{"seq": i, "run_id": "r1", **_bar("r1", i, "pending" if i == 1 else "filled")}
           for i in (1, 2, 3)]  # fmt: skip
    for _ in range(2):  # e.g. a retry after a commit whose answer was lost, a replay
        with database.engine.begin() as conn:
            apply_ops(conn, ops)
    assert _count(database, "select count(*) from orders") == 1  # an upsert
    assert _count(database, "select count(*) from account_history") == 3
    assert _count(database, "select count(*) from orders where status='filled'") == 1


def test_a_dead_sessions_log_is_replayed_then_deleted(database: Any, tmp_path: Path) -> None:
    insert_run(database, "dead")
    path = log_path(tmp_path, "dead")
    with path.open("wb") as fh:  # what a killed process leaves: no lock, a torn last line
        for i in (1, 2):
            fh.write(encode_op({"seq": i, "run_id": "dead", **_bar("dead", i)}))
        fh.write(encode_op({"seq": 3, "run_id": "dead", **_bar("dead", 3)})[:40])
    assert replay_orphans(database.engine, tmp_path) == 2
    assert not path.exists()
    assert _count(database, "select count(*) from account_history") == 2


def test_a_refused_op_is_quarantined_and_later_ops_still_written(
    database: Any, tmp_path: Path
) -> None:
    insert_run(database, "r2")
    log = RecordLog(database.engine, log_path(tmp_path, "r2"), "r2", retry_initial=0.05)
    log.open()
    bad = _bar("r2", 1)
    bad["account"][0]["balance"] = None  # NOT NULL: the database refuses the content
    log.append(bad)
    log.append(_bar("r2", 2))
    assert log.flush(10), log.state()
    assert log.close(5)
    assert log.rejected == 1
    assert _count(database, "select count(*) from account_history") == 1
    rejected = log.rejected_path.read_bytes().splitlines()
    assert len(rejected) == 1 and b'"seq":1' in rejected[0]


def test_an_outage_costs_one_connect_attempt_per_backoff_not_per_append(
    database: Any, tmp_path: Path
) -> None:
    insert_run(database, "r3")
    engine = SwitchableEngine(database.engine)
    log = RecordLog(engine, log_path(tmp_path, "r3"), "r3", retry_initial=0.2, retry_max=0.4)
    log.open()
    engine.down = True
    for i in range(1, 61):  # the loop appends every 10 ms for 0.6 s
        log.append(_bar("r3", i))
        time.sleep(0.01)
    # Backoff 0.2, 0.4, 0.4 s: a handful of attempts, however many appends woke the thread.
    assert 1 <= engine.attempts <= 5, engine.attempts
    assert not log.db_available and log.pending == 60
    engine.down = False
    assert log.flush(10), log.state()
    assert log.close(5)
    assert _count(database, "select count(*) from account_history") == 60


def test_flush_ends_a_backoff_so_a_stop_after_the_outage_drains_at_once(
    database: Any, tmp_path: Path
) -> None:
    insert_run(database, "r4")
    engine = SwitchableEngine(database.engine)
    log = RecordLog(engine, log_path(tmp_path, "r4"), "r4", retry_initial=30.0, retry_max=30.0)
    log.open()
    engine.down = True
    log.append(_bar("r4", 1))
    deadline = time.monotonic() + 5
    while log.db_available:  # the first attempt finds the outage: 30 s of backoff
        assert time.monotonic() < deadline
        time.sleep(0.01)
    engine.down = False
    assert log.flush(5), log.state()  # well before the backoff would have ended
    assert log.close(5)
    assert _count(database, "select count(*) from account_history") == 1


def test_held_ops_all_refused_after_an_outage_do_not_leave_the_applier_spinning(
    database: Any, tmp_path: Path
) -> None:
    """The database comes back but refuses every held op for its content: that answer is a
    recovery, so the applier goes back to waiting instead of re-probing in a hot loop."""
    insert_run(database, "r5")
    engine = SwitchableEngine(database.engine)
    log = RecordLog(engine, log_path(tmp_path, "r5"), "r5", retry_initial=0.05)
    log.open()
    engine.down = True
    bad = _bar("r5", 1)
    bad["account"][0]["balance"] = None  # NOT NULL: refused once the database is back
    log.append(bad)
    deadline = time.monotonic() + 5
    while log.db_available:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    engine.down = False
    while log.rejected < 1:
        assert time.monotonic() < deadline, log.state()
        time.sleep(0.01)
    drains = 0
    real = log._drain

    def counting(reader: Any) -> None:
        nonlocal drains
        drains += 1
        real(reader)

    log._drain = counting  # type: ignore[method-assign]
    time.sleep(0.5)
    assert log.db_available, log.state()
    assert drains <= 10, f"{drains} drains in 0.5 s: the applier is spinning"
    assert log.close(5)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(secret=registered)
def test_the_log_file_never_holds_a_secret_and_its_rows_still_apply(
    database: Any, tmp_path: Path, secret: str
) -> None:
    """The record log is a file atb writes: an exchange rejection echoing a key, a URL with a
    password, a bearer header in an order's note or error code reach it redacted; numbers,
    times and column names (a `session_key` is data) keep their values."""
    previous = get_redactor()
    set_redactor(Redactor(secrets={secret}))
    run_id = f"s{uuid.uuid4().hex[:12]}"  # hypothesis may run one example twice
    try:
        insert_run(database, run_id)
        path = log_path(tmp_path / run_id, run_id)
        log = RecordLog(database.engine, path, run_id, retry_initial=0.05)
        log.open()
        op = _bar(run_id, 1, "rejected")
        order = op["orders"][0]
        order["note"] = f"binance -2015 Invalid API-key {secret}; Authorization: Bearer {secret}"
        order["error_code"] = f"url=https://u:{secret}@proxy.example/x"
        log.append(op)
        on_disk = path.read_text()
        assert not leaks(on_disk, secret)
        assert log.flush(10) and log.close(5)
        with database.engine.connect() as conn:
            note, code, balance = conn.execute(
                text("select o.note, o.error_code, a.balance from orders o, account_history a"
                     " where o.run_id = :r and a.run_id = :r"), {"r": run_id}
            ).one()  # fmt: skip
        assert secret not in note + code and "[REDACTED]" in note and balance == 1.0
    finally:
        set_redactor(previous)
