"""A paper/live session run in this process by the real runner, and the faults to put it
through: a PostgreSQL hard stop, a SQLite file locked by another writer.

Shared by the outage tests (tests/db/test_records_outage.py) and `nox -s bench`
(tests/benchmarks/bench_outage.py): the tests use a short outage, the bench the 60 s one.
"""

from __future__ import annotations

import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text


def compose(overrides: list[str]) -> Any:
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from atb.__main__ import CONFIG_DIR

    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return hydra_compose("config", overrides=overrides)


def wait_for(
    cond: Callable[[], bool], timeout: float, what: str | Callable[[], str] = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            text = what() if callable(what) else what
            raise AssertionError(f"{text} not met within {timeout:g} s")
        time.sleep(0.02)


class InProcessSession:
    """`python -m atb <overrides>` on a thread of this process (Runner + RunContext)."""

    def __init__(self, overrides: list[str], mode: str, strategy: str) -> None:
        from atb.config.validate import validate_config
        from atb.runtime.context import RunContext
        from atb.runtime.runner import Runner

        self.ctx = RunContext(mode=mode, strategy=strategy)
        self.runner = Runner(validate_config(compose(overrides)), self.ctx)
        self.result: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result.update(summary=self.runner.run())
        except BaseException as exc:  # surfaced by stop()
            self.error = exc

    def start(self) -> InProcessSession:
        self.thread.start()
        wait_for(lambda: "live" in self.runner.nodes or self.error is not None, 60, "start")
        return self

    @property
    def engine(self) -> Any:
        return self.runner.nodes["live"]

    def stop(self, timeout: float = 60) -> dict[str, Any]:
        self.ctx.stop_event.set()  # what SIGTERM does
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "session did not stop"
        if self.error is not None:
            raise self.error
        return dict(self.result["summary"])


@contextmanager
def sqlite_locked(path: Path) -> Iterator[None]:
    """Another writer holds the SQLite file's write lock (BEGIN IMMEDIATE) meanwhile."""
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        conn.execute("ROLLBACK")
        conn.close()


@dataclass
class Phases:
    """Iteration times (s) before, during and after an outage."""

    before: list[float]
    during: list[float]
    after: list[float]

    @staticmethod
    def of(stats: list[float], down: int, up: int, skip: int = 5) -> Phases:
        return Phases(stats[skip:down], stats[down + skip : up], stats[up + skip :])

    def medians(self) -> tuple[float, float, float]:
        return (
            statistics.median(self.before),
            statistics.median(self.during),
            statistics.median(self.after) if self.after else float("nan"),
        )


def record_counts(url: str, run_id: str) -> dict[str, tuple[int, int]]:
    """(rows, distinct natural keys) per session table for one run."""
    keys = {
        "orders": "order_no",
        "positions": "position_no",
        "trades": "trade_no",
        "account_history": "time",
        "decisions": "time",
    }
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            counts: dict[str, tuple[int, int]] = {}
            for table, key in keys.items():
                sql = f"SELECT count(*), count(DISTINCT {key}) FROM {table} WHERE run_id = :r"
                rows, distinct = conn.execute(text(sql), {"r": run_id}).one()
                counts[table] = (int(rows), int(distinct))
            return counts
    finally:
        engine.dispose()


def query(url: str, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(text(sql), params)]
    finally:
        engine.dispose()
