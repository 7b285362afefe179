"""The event journal on SQLite and PostgreSQL: exactly-once, spill/replay, state, shutdown."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from db_helpers import event_counts, make_db, record, uuids
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from atb.db.journal import Journal, JournalConfig, row_from_json
from atb.db.models import SystemEvent
from atb.db.node import Database
from atb.runtime.context import RunContext


def make_journal(db: Database, tmp_path: Path, **settings: Any) -> Journal:
    config = JournalConfig.model_validate({
        "_target_": "atb.db.journal.Journal",
        "listen": False,
        "spill_path": str(tmp_path / "spill.jsonl"),
        "flush_interval": 0.02,
        "retry_initial": 0.05,
        "retry_max": 0.2,
        **settings,
    })  # fmt: skip
    return Journal(config, RunContext(run_id="run-1"), db=db)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = make_db(db_url)
    database.start()
    yield database
    database.stop()


class Outage:
    """Make the journal's inserts fail as if the server were unreachable."""

    def __init__(self, journal: Journal) -> None:
        self.down = threading.Event()
        real = journal.writer.execute

        def execute(rows: list[Any]) -> None:
            if self.down.is_set():
                raise OperationalError("INSERT", {}, ConnectionRefusedError("server down"))
            real(rows)

        journal.writer.execute = execute  # type: ignore[method-assign]


def test_events_are_written_once_with_their_columns(db: Database, tmp_path: Path) -> None:
    journal = make_journal(db, tmp_path)
    journal.start()
    assert journal.ctx.journal is journal  # the run's journal service for other nodes
    assert journal.ctx.probes.read("journal") == journal.state()  # what the health server reads
    records = [record(i) for i in range(500)]
    for r in records:
        journal.enqueue(r)
    journal.emit({"event_type": "TEST", "message": "Heartbeat", "component": "scheduler"})
    journal.enqueue(record(999, level="WARNING", event_type=None, name=None,
                           message="slow feed", fields={}))  # fmt: skip
    journal.enqueue(
        record(
            1000,
            level="ERROR",
            event_type="order_event",
            name="order_rejected",
            fields={"error_code": "-2010", "reason": "insufficient balance"},
            exception={"type": "InsufficientFunds", "traceback": "Traceback..."},
        )
    )
    journal.stop()
    assert journal.ctx.journal is None and journal.ctx.probes.read("journal") is None
    assert event_counts(db) == (503, 503)
    assert {r["id"] for r in records} <= uuids(db)
    with db.session() as s:
        query = select(SystemEvent).where(SystemEvent.event_uuid == records[0]["id"])
        first = s.scalars(query).one()
        assert first.event_type == "ORDER" and first.name == "order_filled"
        assert first.severity == "INFO" and first.session_id == "run-1"
        assert first.details == {"qty": 0.5, "price": 100.0, "order_id": "o0"}
        assert first.symbol == "BTCUSDT" and first.strategy == "ml_basic"
        assert first.timestamp.replace(tzinfo=None) == records[0]["timestamp"].replace(tzinfo=None)
        test = s.scalars(select(SystemEvent).where(SystemEvent.event_type == "TEST")).one()
        assert (test.message, test.component) == ("Heartbeat", "scheduler")
        warning = s.scalars(select(SystemEvent).where(SystemEvent.message == "slow feed")).one()
        assert warning.event_type == "WARNING" and warning.severity == "WARNING"
        rejected = s.scalars(select(SystemEvent).where(SystemEvent.name == "order_rejected")).one()
        assert rejected.event_type == "ORDER" and rejected.severity == "ERROR"
        assert rejected.error_code == "-2010" and rejected.stack_trace == "Traceback..."
    state = journal.state()
    assert state["written"] == 503 and state["queue_depth"] == 0 and state["spilled"] == 0


def test_seed_event_types_from_event_names(db: Database, tmp_path: Path) -> None:
    journal = make_journal(db, tmp_path)
    journal.start()
    names = {"backtest_start": "ENGINE_START", "live_stopped": "ENGINE_STOP",
             "strategy_change": "STRATEGY_CHANGE", "model_update": "MODEL_UPDATE",
             "balance_adjustment": "BALANCE_ADJUSTMENT", "stale_data": "DATA",
             "limit_breached": "RISK"}  # fmt: skip
    families = {"stale_data": "data_event", "limit_breached": "risk_event"}
    for name in names:
        journal.enqueue(record(name=name, event_type=families.get(name, "engine_event"),
                               message=name))  # fmt: skip
    journal.emit({"event_type": "ALERT", "message": "drawdown", "alert_sent": True,
                  "alert_method": "webhook", "severity": "WARNING"})  # fmt: skip
    journal.stop()
    with db.session() as s:
        got = {e.message: e.event_type for e in s.scalars(select(SystemEvent))}
        alert = s.scalars(select(SystemEvent).where(SystemEvent.event_type == "ALERT")).one()
    assert {k: got[k] for k in names} == names
    assert alert.alert_sent is True and alert.alert_method == "webhook"


def test_replay_is_idempotent(db: Database, tmp_path: Path) -> None:
    """Everything enqueued twice, spilled and replayed twice: each event once."""
    journal = make_journal(db, tmp_path)
    journal.start()
    records = [record(i) for i in range(300)]
    for r in records + records:
        journal.enqueue(r)
    journal.flush()
    journal.stop()
    # A crash after a spill file was replayed but before it was deleted: replay it again.
    spill = tmp_path / "spill.jsonl"
    from atb.db.journal import RowBuilder, row_to_json

    build = RowBuilder("run-1", ts_text=db.dialect == "sqlite")
    spill.write_text("".join(row_to_json(build(r)) + "\n" for r in records * 2))
    again = make_journal(db, tmp_path)
    assert again.state()["spill_pending"] == 600
    again.start()
    assert again.flush()
    _wait(lambda: again.state()["spill_pending"] == 0)
    again.stop()
    assert event_counts(db) == (300, 300)
    assert not spill.exists()


def test_outage_spills_then_replays_exactly_once(db: Database, tmp_path: Path) -> None:
    journal = make_journal(db, tmp_path, queue_size=50)
    outage = Outage(journal)
    journal.start()
    sent = [record(i) for i in range(100)]
    for r in sent[:20]:
        journal.enqueue(r)
    assert journal.flush()
    outage.down.set()
    for r in sent[20:]:  # more than queue_size: the overflow goes straight to the file
        journal.enqueue(r)
    _wait(lambda: journal.state()["spill_pending"] == 80)
    state = journal.state()
    assert state["db_available"] is False
    assert "server down" in state["last_error"]
    assert state["queue_depth"] == 0 and state["spilled"] == 80
    # Retries rotate the file to spill.jsonl.replay-*; together they hold the overflow.
    lines = [ln for f in journal.spill.pending_files() for ln in f.read_text().splitlines()]
    assert {row_from_json(line)[0] for line in lines} == {r["id"] for r in sent[20:]}
    outage.down.clear()
    _wait(lambda: journal.state()["spill_pending"] == 0)
    journal.stop()
    assert event_counts(db) == (100, 100)
    state = journal.state()
    assert state["db_available"] is True and state["replayed"] == 80
    assert state["last_error"] is None and state["errors"] >= 1 and state["last_error_at"]


def test_stop_during_outage_keeps_everything_on_disk(db: Database, tmp_path: Path) -> None:
    journal = make_journal(db, tmp_path)
    outage = Outage(journal)
    journal.start()
    outage.down.set()
    sent = [record(i) for i in range(200)]
    for r in sent:
        journal.enqueue(r)
    t0 = time.monotonic()
    journal.stop()
    assert time.monotonic() - t0 < 3, "a dead database must not hold up shutdown"
    assert event_counts(db) == (0, 0)
    # The next run replays what this one could not write.
    nxt = make_journal(db, tmp_path)
    assert nxt.state()["spill_pending"] == 200
    nxt.start()
    _wait(lambda: nxt.state()["spill_pending"] == 0)
    nxt.stop()
    assert uuids(db) == {r["id"] for r in sent}


def test_two_journals_sharing_a_spill_path(db: Database, tmp_path: Path) -> None:
    """A multirun's parallel jobs on one database share its spill file: nothing is lost
    when one rotates the file for replay while the other still appends to it."""
    journals = [make_journal(db, tmp_path), make_journal(db, tmp_path)]
    outages = [Outage(j) for j in journals]
    for j, o in zip(journals, outages, strict=True):
        j.start()
        o.down.set()
    sent = [record(i) for i in range(2000)]
    for i, r in enumerate(sent):
        journals[i % 2].enqueue(r)
        if i == 1000:
            outages[0].down.clear()  # journal 0 recovers and replays while 1 still spills
    _wait(lambda: all(not j._queue for j in journals))
    outages[1].down.clear()
    for j in journals:
        assert j.flush()
    _wait(lambda: not journals[0].spill.pending_files() and not journals[1].spill.pending_files())
    for j in journals:
        j.stop()
    assert uuids(db) == {r["id"] for r in sent}
    assert event_counts(db) == (2000, 2000)


def test_torn_spill_line_from_a_hard_kill_is_skipped(db: Database, tmp_path: Path) -> None:
    journal = make_journal(db, tmp_path)
    outage = Outage(journal)
    journal.start()
    outage.down.set()
    for i in range(10):
        journal.enqueue(record(i))
    journal.stop()
    with (tmp_path / "spill.jsonl").open("a") as fh:
        fh.write('["half a line')
    nxt = make_journal(db, tmp_path)
    nxt.start()
    _wait(lambda: nxt.state()["spill_pending"] == 0)
    nxt.stop()
    assert event_counts(db) == (10, 10)
    assert nxt.state()["dropped"] == 1


def test_rows_the_database_rejects_do_not_block_the_rest(db: Database, tmp_path: Path) -> None:
    journal = make_journal(db, tmp_path)
    journal.start()
    good = [record(i) for i in range(20)]
    nul = record(99, message="bad\x00byte", fields={"x": "a\x00b"}, logger="l" * 500)
    for r in [*good[:10], nul, *good[10:]]:
        journal.enqueue(r)
    journal.stop()
    # NUL bytes (PostgreSQL) are escaped and over-long values cut: nothing is lost.
    assert event_counts(db) == (21, 21)
    assert journal.state()["rejected"] == 0


def test_enqueue_never_blocks_while_the_database_is_down(db: Database, tmp_path: Path) -> None:
    journal = make_journal(db, tmp_path, queue_size=1000)
    outage = Outage(journal)
    journal.start()
    outage.down.set()
    lat = []
    for i in range(5000):
        t0 = time.perf_counter()
        journal.enqueue(record(i))
        lat.append(time.perf_counter() - t0)
    journal.stop()
    # Generous bounds for a busy CI box; the benchmark checks the real p99 target.
    assert sorted(lat)[int(len(lat) * 0.99)] < 0.005
    assert journal.state()["spilled"] == 5000, journal.state()


def test_retries_during_an_outage_probe_the_server_before_reading_the_spill(
    db: Database, tmp_path: Path
) -> None:
    from db_helpers import SwitchableEngine

    journal = make_journal(db, tmp_path)
    outage = Outage(journal)
    inserts: list[int] = []
    execute = journal.writer.execute

    def counted(rows: list[Any]) -> None:
        inserts.append(len(rows))
        execute(rows)

    journal.writer.execute = counted  # type: ignore[method-assign]
    engine = SwitchableEngine(db.engine)
    journal.writer.db = type("Db", (), {"engine": engine, "redacted_url": db.redacted_url})()
    journal.start()
    engine.down = True
    outage.down.set()
    for i in range(40):  # 0.8 s of events while the server refuses connections
        journal.enqueue(record(i))
        time.sleep(0.02)
    _wait(lambda: journal.spill_pending == 40)
    # One insert found the outage; the retries since (backoff 0.05 .. 0.2 s) were connects.
    assert len(inserts) == 1 and engine.attempts >= 2, (inserts, engine.attempts)
    engine.down = False
    outage.down.clear()
    _wait(lambda: journal.spill_pending == 0)
    journal.stop()
    assert event_counts(db) == (40, 40)


def test_listener_journals_atb_logging_events(db: Database, tmp_path: Path) -> None:
    events = pytest.importorskip("atb.logging.events")
    from loguru import logger

    from atb.logging import configure_logging

    configure_logging()  # routes loguru records through atb.logging's pipeline

    journal = make_journal(db, tmp_path, listen=True)
    journal.start()
    try:
        emitters = [getattr(events, n) for n in ("log_order_event", "log_engine_event")
                    if hasattr(events, n)]  # fmt: skip
        for fn in emitters:
            fn("journal_test_event", message="from the listener")
        logger.warning("journal test warning {}", 42)
        assert journal.flush()
    finally:
        journal.stop()
    with db.session() as s:
        rows = list(s.scalars(select(SystemEvent)))
    assert any(r.event_type == "WARNING" and "journal test warning 42" in r.message for r in rows)
    assert sum(r.name == "journal_test_event" for r in rows) == len(emitters)


def _wait(cond: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")
