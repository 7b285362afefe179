"""Small builders shared by the db tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, text

from atb.db.models.run_records import Run
from atb.db.node import Database, DatabaseConfig
from atb.runtime.context import RunContext


def make_db(url: str, **settings: Any) -> Database:
    config = DatabaseConfig.model_validate({"_target_": "atb.db.node.Database", "url": url,
                                            **settings})  # fmt: skip
    return Database(config, RunContext())


def record(i: int = 0, **over: Any) -> dict[str, Any]:
    """A record shaped like atb.logging.hooks hands to listeners."""
    base: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "timestamp": datetime.now(UTC),
        "level": "INFO",
        "logger": "atb.engine",
        "message": f"order {i} filled",
        "event_type": "order_event",
        "name": "order_filled",
        "fields": {"qty": 0.5, "price": 100.0 + i, "order_id": f"o{i}"},
        "context": {"run_id": "run-1", "symbol": "BTCUSDT", "strategy": "ml_basic"},
        "exception": None,
    }
    base.update(over)
    return base


def event_counts(db: Database) -> tuple[int, int]:
    """(rows, distinct uuids) in system_events."""
    with db.engine.connect() as conn:
        row = conn.execute(
            text("SELECT count(*), count(DISTINCT event_uuid) FROM system_events")
        ).one()
    return int(row[0]), int(row[1])


def uuids(db: Database) -> set[str]:
    with db.engine.connect() as conn:
        return {r[0] for r in conn.execute(text("SELECT event_uuid FROM system_events"))}


def insert_run(db: Any, run_id: str, started_at: datetime | None = None) -> None:
    """A paper session's `runs` row, as a session writes it at start."""
    with db.engine.begin() as conn:
        conn.execute(
            insert(Run),
            [{"id": run_id, "mode": "paper", "strategy": "s", "symbol": "BTCUSDT",
              "timeframe": "1h", "status": "running",
              "started_at": started_at or datetime(2024, 1, 1, tzinfo=UTC), "config": {},
              "overrides": [], "metrics": {}}],
        )  # fmt: skip


class SwitchableEngine:
    """A database engine behind a switch: while `down`, every connection is refused (what
    a stopped server does), and `attempts` counts the connections tried meanwhile."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self.down = False
        self.attempts = 0

    def _gate(self) -> None:
        if self.down:
            from sqlalchemy.exc import OperationalError

            self.attempts += 1
            raise OperationalError("connect", {}, ConnectionRefusedError("refused"))

    def connect(self) -> Any:
        self._gate()
        return self.engine.connect()

    def begin(self) -> Any:
        self._gate()
        return self.engine.begin()
