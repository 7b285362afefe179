"""The `journal` node: the callers' side (enqueue/emit), life cycle and health.

See the package docstring (atb/db/journal/__init__.py) for the delivery guarantees.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from loguru import logger
from pydantic import Field

from atb.config.base import NodeConfig
from atb.db.journal.pipeline import Pipeline
from atb.db.journal.rows import RowBuilder
from atb.db.journal.spill import SpillFile
from atb.db.journal.status import JournalStatus
from atb.db.journal.writer import EventWriter
from atb.db.node import Database
from atb.db.url import default_spill_path
from atb.logging.ids import event_id
from atb.logging.redaction import get_redactor
from atb.runtime.context import RunContext
from atb.runtime.node import Node


class JournalConfig(NodeConfig):
    queue_size: int = Field(100_000, ge=1, description="events held in memory before spilling")
    batch_size: int = Field(2_000, ge=1, description="rows per insert transaction")
    flush_interval: float = Field(0.1, gt=0, description="writer wakes at least this often (s)")
    spill_path: str | None = Field(
        None,
        description="append-only overflow file; default next to a SQLite db, else in the "
        "run's output dir (or the working dir)",
    )
    retry_initial: float = Field(0.5, gt=0, description="first retry delay after a DB failure")
    retry_max: float = Field(10.0, gt=0, description="retry delay cap (doubles per failure)")
    fsync_interval: float = Field(1.0, ge=0, description="fsync the spill file at most this often")
    stop_timeout: float = Field(
        5.0, gt=0, description="stop() writes to the DB this long, then spills the rest"
    )
    listen: bool = Field(True, description="journal every atb.logging event/WARNING+ record")


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


class Journal(Node[JournalConfig]):
    """Every atb.logging event, WARNING+ record and alert -> a `system_events` row.

    While started it is the run's journal service: `ctx.journal` (for nodes that do not
    list it in `needs`) and `ctx.probes` "journal" (its `state()`, for the health server).
    """

    def __init__(self, config: JournalConfig, ctx: RunContext, db: Database) -> None:
        super().__init__(config, ctx)
        self.db = db
        self.spill_path = self._default_spill_path(config, ctx, db)
        self.status = JournalStatus()
        ts_text = db.engine.dialect.name == "sqlite"
        self.spill = SpillFile(self.spill_path, self.status, ts_text)
        self.rejected_path = self.spill.rejected_path
        self.writer = EventWriter(
            db, self.spill, self.status, config.retry_initial, config.retry_max
        )
        self._to_row = RowBuilder(ctx.run_id, ts_text=ts_text)
        self._ts_text = ts_text
        self.pipeline = Pipeline(
            self._to_row,
            self.writer,
            self.spill,
            self.status,
            batch_size=config.batch_size,
            flush_interval=config.flush_interval,
            stop_timeout=config.stop_timeout,
            fsync_interval=config.fsync_interval,
        )
        # The callers' path touches only these two: no attribute chain per event.
        self._queue = self.pipeline.queue
        self._wake = self.pipeline.wake
        self._maxsize = config.queue_size
        self._batch = config.batch_size
        self._remove_listener: Callable[[], Any] | None = None
        self._unregister_probe: Callable[[], None] | None = None

    @staticmethod
    def _default_spill_path(config: JournalConfig, ctx: RunContext, db: Database) -> Path:
        if config.spill_path:
            return Path(config.spill_path).expanduser()
        # Stable per database, so the next run on it replays what this one spilled.
        return default_spill_path(db.url, ctx.output_dir)

    @property
    def spill_pending(self) -> int:
        return self.status.spill_pending

    @property
    def db_available(self) -> bool:
        return self.status.db_available

    @property
    def cpu_seconds(self) -> dict[str, float]:
        return self.status.cpu_seconds

    # -- node lifecycle -------------------------------------------------------------

    def start(self) -> None:
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        self.pipeline.start()
        if self.config.listen:
            from atb.logging.hooks import add_record_listener

            self._remove_listener = add_record_listener(self.enqueue)
        self.ctx.journal = self
        self._unregister_probe = self.ctx.probes.register("journal", self.state)
        if self.spill_pending:
            logger.info(
                "journal: {} spilled events from an earlier run will be replayed from {}",
                self.spill_pending,
                self.spill_path,
            )

    def stop(self) -> None:
        if self._remove_listener is not None:
            with contextlib.suppress(Exception):
                self._remove_listener()
            self._remove_listener = None
        self.pipeline.stop()
        if self._unregister_probe is not None:
            self._unregister_probe()
            self._unregister_probe = None
        if self.ctx.journal is self:
            self.ctx.journal = None

    # -- the callers' side ------------------------------------------------------------

    def enqueue(self, record: Mapping[str, Any]) -> None:
        """Queue one record; never blocks on the database, never raises.

        This is the atb.logging record listener. The record must not be mutated after.
        """
        dq = self._queue
        if len(dq) >= self._maxsize:
            self._overflow(record)
            return
        dq.append(record)  # deque.append is atomic: no lock on the callers' path
        self.status.enqueued += 1
        if len(dq) >= self._batch and not self._wake.is_set():
            self._wake.set()

    def emit(self, event: Mapping[str, Any]) -> str:
        """Journal one event from a direct caller (alerts, heartbeat); returns its UUID.

        Accepts the record shape of atb.logging or column names: event_type, severity,
        message, details, component, error_code, stack_trace, alert_sent, alert_method,
        session_id, timestamp, id.
        """
        # Records from atb.logging were redacted when made; a direct caller's were not, and
        # on PostgreSQL the rows go in by COPY, past the engine's redaction hook.
        record = get_redactor().redact_mapping(event)
        record.setdefault("id", event_id())
        record.setdefault("timestamp", datetime.now(UTC))
        self.enqueue(record)
        return str(record["id"])

    def _overflow(self, record: Mapping[str, Any]) -> None:
        """The queue is full (database slow or down): the caller writes one spill line."""
        status = self.status
        try:
            row = RowBuilder(self.ctx.run_id, ts_text=self._ts_text)(record)
            self.spill.append([row])
            status.enqueued += 1
            status.overflowed += 1
        except Exception as exc:  # never raise into the caller's logging call
            status.dropped += 1
            status.note_error(f"spill failed: {exc}")

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is written (or spilled); True if done in time."""
        return self.pipeline.flush(timeout)

    # -- health ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Journal health for /status (also published as ctx.probes "journal").

        queue_depth/queue_size: events in memory; enqueued/written/spilled/replayed/
        rejected/dropped: totals since start (overflowed: spilled by callers because the
        queue was full); spill_pending: lines in spill files not yet in the database;
        db_available: false while backing off; last_error: the current problem (None once
        a write succeeds again), errors/last_error_at: the history; last_write_at: the
        last successful insert (ISO 8601 UTC).
        """
        s = self.status
        return {
            "queue_depth": len(self._queue),
            "queue_size": self._maxsize,
            "enqueued": s.enqueued,
            "written": s.written,
            "spilled": s.spilled,
            "overflowed": s.overflowed,
            "spill_pending": s.spill_pending,
            "replayed": s.replayed,
            "rejected": s.rejected,
            "dropped": s.dropped,
            "db_available": s.db_available,
            "last_error": s.last_error,
            "errors": s.errors,
            "last_error_at": _iso(s.last_error_at),
            "last_write_at": _iso(s.last_write_at),
            "spill_path": str(self.spill_path),
            "running": self.pipeline.running,
        }
