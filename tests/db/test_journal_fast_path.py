"""The journal's fast path: time-ordered ids, multi-row SQLite INSERTs, orjson encoding."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from db_helpers import event_counts, make_db, record, uuids
from sqlalchemy import select

from atb.db.bulk import RowWriter, sqlite_timestamp
from atb.db.journal import COLUMNS, Journal, JournalConfig, RowBuilder
from atb.db.journal.rows import TABLE, _timestamp
from atb.db.models import SystemEvent
from atb.db.node import Database
from atb.logging.ids import event_id
from atb.runtime.context import RunContext


def make_journal(db: Database, tmp_path: Path, **settings: Any) -> Journal:
    config = JournalConfig.model_validate({
        "_target_": "atb.db.journal.Journal",
        "listen": False,
        "spill_path": str(tmp_path / "spill.jsonl"),
        "flush_interval": 0.02,
        **settings,
    })  # fmt: skip
    return Journal(config, RunContext(run_id="run-1"), db=db)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = make_db(db_url)
    database.start()
    yield database
    database.stop()


def test_event_ids_are_uuid7_time_ordered_and_unique() -> None:
    ids = [event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in parsed)
    assert all(str(u) == i for u, i in zip(parsed, ids, strict=True))  # canonical text
    # The first 48 bits are Unix milliseconds: ordered across milliseconds.
    millis = [u.int >> 80 for u in parsed]
    assert millis == sorted(millis)
    assert abs(millis[-1] - time.time_ns() // 1_000_000) < 60_000


def test_event_ids_ignore_user_seeding() -> None:
    random.seed(42)
    a = event_id()
    random.seed(42)
    assert event_id()[14:] != a[14:]  # the random part does not follow random.seed


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_draw_other_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.write(write, event_id()[14:].encode())
        os._exit(0)
    mine = event_id()[14:]
    os.waitpid(pid, 0)
    assert os.read(read, 64).decode() != mine


@pytest.mark.parametrize("n", [1, 7, 255, 256, 257, 999, 1000, 1001, 2_000, 2_345])
def test_sqlite_batches_of_any_size_land_exactly_once(n: int, tmp_path: Path) -> None:
    db = make_db(f"sqlite:///{tmp_path / 'db.sqlite'}")
    db.start()
    try:
        build = RowBuilder("run-1", ts_text=True)
        rows = [build(record(i, id=event_id())) for i in range(n)]
        insert = RowWriter("sqlite", TABLE, COLUMNS, conflict="event_uuid")
        with db.engine.begin() as conn:
            insert(conn, rows)
        # A replay of the same batch plus duplicates inside one statement: still once.
        with db.engine.begin() as conn:
            insert(conn, rows + rows[: min(n, 300)])
        assert event_counts(db) == (n, n)
        assert uuids(db) == {r[0] for r in rows}
        with db.engine.connect() as conn:
            prices = sorted(
                (json.loads(d) if isinstance(d, str) else d)["price"]
                for d in conn.scalars(select(SystemEvent.details))
            )
        assert prices == [100.0 + i for i in range(n)]
    finally:
        db.stop()


def test_details_keep_their_json_shape(db: Database, tmp_path: Path) -> None:
    """orjson encodes details; what it refuses falls back to the stdlib encoder."""
    journal = make_journal(db, tmp_path)
    journal.start()
    odd: dict[str, Any] = {
        "price": Decimal("1.5"),  # no JSON form: its str()
        "big": 2**70,  # beyond 64 bits: orjson refuses, the stdlib takes it
        "text": "naïve ✓",
        "items": (1, 2),
    }
    journal.enqueue(record(1, fields={"price": 1.5, "nested": {"a": [1, None, True]}}))
    journal.enqueue(record(2, fields=odd))
    journal.enqueue(record(3, fields={1: "int key"}))
    journal.enqueue(record(4, fields={"nan": float("nan")}))  # jsonb has no NaN: null
    journal.stop()
    assert journal.state()["written"] == 4
    with db.engine.connect() as conn:
        rows = conn.execute(select(SystemEvent.message, SystemEvent.details)).all()
    details = {m: (json.loads(d) if isinstance(d, str) else d) for m, d in rows}
    assert details["order 1 filled"] == {"price": 1.5, "nested": {"a": [1, None, True]}}
    got = details["order 2 filled"]
    assert got["price"] == "1.5" and got["big"] == 2**70 and got["text"] == "naïve ✓"
    assert got["items"] == [1, 2]
    assert details["order 3 filled"] == {"1": "int key"}
    assert details["order 4 filled"] == {"nan": None}


def test_numpy_scalars_stay_numbers() -> None:
    np = pytest.importorskip("numpy")
    row = RowBuilder("run-1")(record(1, fields={"qty": np.float64(0.25), "n": np.int64(3)}))
    assert json.loads(row[7]) == {"qty": 0.25, "n": 3}


def test_sqlite_timestamp_text_matches_sqlalchemy_format() -> None:
    """The per-second text cache gives SQLAlchemy's DateTime text for any timestamp order."""
    eastern = timezone(timedelta(hours=-5))
    base = datetime(2026, 3, 1, 23, 59, 59, 999_999, tzinfo=UTC)
    stamps: list[Any] = [
        base,
        base + timedelta(microseconds=1),  # next second, day and month
        base,  # back again
        base.replace(microsecond=0),
        base.replace(microsecond=5),
        base - timedelta(days=400),
        base.astimezone(eastern),  # other zone: stored as UTC
        base.replace(tzinfo=None),  # naive: taken as UTC
        (base + timedelta(hours=1)).timestamp(),  # epoch seconds
        "2026-03-02T00:00:00.000123+00:00",
        base + timedelta(hours=1),  # same minute and second, another hour
        base + timedelta(days=1),  # same time of day, another day
    ]
    build = RowBuilder("run-1", ts_text=True)
    for ts in stamps:
        got = build(record(1, timestamp=ts))[1]
        assert got == sqlite_timestamp(_timestamp(ts)), ts
        assert len(got) == 26


def test_none_and_bool_bind_as_before(db: Database, tmp_path: Path) -> None:
    """The sqlite3 adapters for None/bool (the binding fast path) store NULL and 0/1."""
    assert sqlite3.adapters[(type(None), sqlite3.PrepareProtocol)](None) is None
    assert sqlite3.adapters[(bool, sqlite3.PrepareProtocol)](True) == 1
    journal = make_journal(db, tmp_path)
    journal.start()
    journal.emit({"event_type": "ALERT", "message": "sent", "alert_sent": True})
    journal.emit({"event_type": "ALERT", "message": "held", "alert_sent": False})
    journal.stop()
    with db.engine.connect() as conn:
        columns = (SystemEvent.message, SystemEvent.alert_sent, SystemEvent.stack_trace)
        rows = conn.execute(select(*columns, SystemEvent.alert_method, SystemEvent.details)).all()
    assert sorted(rows) == [("held", False, None, None, None), ("sent", True, None, None, None)]
    if db.engine.dialect.name == "sqlite":
        with db.engine.connect() as conn:
            raw = conn.exec_driver_sql(
                "SELECT alert_sent, typeof(alert_sent), typeof(stack_trace) FROM system_events"
                " ORDER BY message"
            ).all()
        assert raw == [(0, "integer", "null"), (1, "integer", "null")]
