"""Event journal throughput and enqueue latency vs the naive one-INSERT-per-event baseline.

Same process, same run, same records, SQLite (WAL file) and a throwaway PostgreSQL 15
cluster (fsync on, as in production):

- journal: the `journal` node's path: enqueue every record (timing each call), then wait
  until the last row is committed; events/s = records / (first enqueue .. last commit);
- naive: one INSERT + COMMIT per event through SQLAlchemy Core, the pattern the journal
  replaces (measured on fewer events: it is slow);
- enqueue p99 while the database is down: PostgreSQL stopped with `pg_ctl stop -m
  immediate`; SQLite made to fail every insert (a file database cannot be "down").

Targets (issue 5): >= 50 000 events/s into SQLite, >= 20 000/s into PostgreSQL, enqueue
p99 <= 50 us, also while the database is down. Run: `nox -s bench` or
`pytest tests/benchmarks/bench_journal.py -s -o 'python_files=bench_*.py'`.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from atb_testkit.pgtemp import TempPostgres, find_pg_bin
from sqlalchemy import insert
from sqlalchemy.exc import OperationalError

from atb.db.journal import Journal, JournalConfig, RowBuilder, row_as_dict
from atb.db.models import SystemEvent
from atb.db.node import Database, DatabaseConfig
from atb.logging.ids import event_id
from atb.runtime.context import RunContext

N_JOURNAL = 100_000
N_NAIVE = 2_000
N_DOWN = 50_000
TARGET_EPS = {"sqlite": 50_000, "postgresql": 20_000}
TARGET_P99_US = 50.0
RESULTS: dict[str, dict[str, float]] = {}


def make_records(n: int) -> list[dict[str, Any]]:
    """Records shaped like atb.logging's listener records (one shared context dict)."""
    context = {"run_id": "bench", "mode": "paper", "symbol": "BTCUSDT", "strategy": "ml_basic"}
    now = datetime.now(UTC)
    return [
        {
            "id": event_id(),  # as atb.logging makes them
            "timestamp": now,
            "level": "INFO",
            "logger": "atb.engine.live",
            "message": "order_filled",
            "event_type": "order_event",
            "name": "order_filled",
            "fields": {"side": "buy", "qty": 0.01, "price": 43000.5 + i, "order_id": f"o-{i}"},
            "context": context,
            "exception": None,
        }
        for i in range(n)
    ]


def make_db(url: str) -> Database:
    db = Database(
        DatabaseConfig.model_validate({"_target_": "atb.db.node.Database", "url": url}),
        RunContext(),
    )
    db.start()
    return db


def make_journal(db: Database, spill: Path, **settings: Any) -> Journal:
    config = JournalConfig.model_validate(
        {
            "_target_": "atb.db.journal.Journal",
            "listen": False,
            "spill_path": str(spill),
            "queue_size": N_JOURNAL + 10,
            **settings,
        }
    )
    return Journal(config, RunContext(run_id="bench"), db=db)


def p99_us(samples_ns: list[int]) -> float:
    return statistics.quantiles(samples_ns, n=100)[98] / 1000


def run_journal(db: Database, spill: Path, records: list[dict[str, Any]]) -> tuple[float, float]:
    """(events/s to committed rows, enqueue p99 in us)."""
    journal = make_journal(db, spill)
    journal.start()
    lat: list[int] = []
    clock = time.perf_counter_ns
    gc.collect()
    t0 = time.perf_counter()
    for record in records:
        s = clock()
        journal.enqueue(record)
        lat.append(clock() - s)
    assert journal.flush(timeout=300), journal.state()
    elapsed = time.perf_counter() - t0
    journal.stop()
    state = journal.state()
    assert state["written"] == len(records) and state["spilled"] == 0, state
    cpu = journal.cpu_seconds
    print(
        f"\n  wall {elapsed:.2f}s; CPU: converter {cpu['convert']:.2f}s "
        f"({len(records) / cpu['convert']:,.0f} rows/CPU-s), inserter {cpu['insert']:.2f}s "
        f"({len(records) / cpu['insert']:,.0f} rows/CPU-s)"
    )
    return len(records) / elapsed, p99_us(lat)


def run_naive(db: Database, records: list[dict[str, Any]]) -> float:
    """One INSERT + COMMIT per event through SQLAlchemy Core."""
    build = RowBuilder("bench", ts_text=False)
    rows = [row_as_dict(build(r)) for r in records]
    for row in rows:  # Core binds Python values itself
        for key in ("details", "context"):
            if row[key] is not None:
                import json

                row[key] = json.loads(row[key])
    stmt = insert(SystemEvent)
    t0 = time.perf_counter()
    for row in rows:
        with db.engine.begin() as conn:
            conn.execute(stmt, row)
    return len(rows) / (time.perf_counter() - t0)


def run_down(db: Database, spill: Path, records: list[dict[str, Any]], stop_db: Any) -> float:
    """Enqueue p99 (us) while every insert fails and the writer spills to disk."""
    journal = make_journal(db, spill, retry_initial=5.0, retry_max=5.0)
    journal.start()
    stop_db(journal)
    lat: list[int] = []
    clock = time.perf_counter_ns
    gc.collect()
    for record in records:
        s = clock()
        journal.enqueue(record)
        lat.append(clock() - s)
        if len(lat) % 1000 == 0:
            time.sleep(0.001)  # a trading loop, not a tight flood: let the writer run
    journal.stop()
    state = journal.state()
    assert state["spilled"] == len(records), state
    print(f"  (db down: {state['overflowed']} of {len(records)} spilled by the caller)")
    return p99_us(lat)


@pytest.fixture(scope="module")
def pg() -> Iterator[TempPostgres]:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    cluster = TempPostgres(fsync=True)
    cluster.init()
    cluster.start()
    yield cluster
    cluster.destroy()


def _report(backend: str, figures: dict[str, float]) -> None:
    RESULTS[backend] = figures
    print(
        f"\n[journal/{backend}] journal {figures['journal_eps']:,.0f} ev/s | naive "
        f"{figures['naive_eps']:,.0f} ev/s | ratio {figures['ratio']:.0f}x | enqueue p99 "
        f"{figures['p99_us']:.2f} us (db up), {figures['p99_down_us']:.2f} us (db down)"
    )


def test_journal_sqlite(tmp_path: Path) -> None:
    db = make_db(f"sqlite:///{tmp_path / 'bench.db'}")
    eps, p99 = run_journal(db, tmp_path / "spill.jsonl", make_records(N_JOURNAL))
    naive = run_naive(db, make_records(N_NAIVE))

    def fail_inserts(journal: Journal) -> None:
        def down(rows: list[Any]) -> None:
            raise OperationalError("INSERT", {}, ConnectionRefusedError("database down"))

        journal.writer.execute = down  # type: ignore[method-assign]

    p99_down = run_down(db, tmp_path / "spill-down.jsonl", make_records(N_DOWN), fail_inserts)
    db.stop()
    figures = {"journal_eps": eps, "naive_eps": naive, "ratio": eps / naive, "p99_us": p99,
               "p99_down_us": p99_down}  # fmt: skip
    _report("sqlite", figures)
    assert eps >= TARGET_EPS["sqlite"], f"{eps:,.0f} events/s into SQLite"
    assert p99 <= TARGET_P99_US and p99_down <= TARGET_P99_US


def test_journal_postgres(pg: TempPostgres, tmp_path: Path) -> None:
    db = make_db(pg.create_database("bench"))
    eps, p99 = run_journal(db, tmp_path / "spill.jsonl", make_records(N_JOURNAL))
    naive = run_naive(db, make_records(N_NAIVE))
    p99_down = run_down(
        db, tmp_path / "spill-down.jsonl", make_records(N_DOWN), lambda j: pg.stop("immediate")
    )
    pg.start()
    db.stop()
    figures = {"journal_eps": eps, "naive_eps": naive, "ratio": eps / naive, "p99_us": p99,
               "p99_down_us": p99_down}  # fmt: skip
    _report("postgresql", figures)
    assert eps >= TARGET_EPS["postgresql"], f"{eps:,.0f} events/s into PostgreSQL"
    assert p99 <= TARGET_P99_US and p99_down <= TARGET_P99_US
