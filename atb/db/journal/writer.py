"""The journal's database side: insert batches exactly once, tell an outage from bad rows.

SQLite gets multi-row `INSERT ... ON CONFLICT (event_uuid) DO NOTHING` statements,
PostgreSQL a COPY into a temp table merged with one `INSERT ... SELECT ... ON CONFLICT DO
NOTHING` (atb.db.bulk.RowWriter). Event ids are time-ordered (atb.logging.ids), so the
unique index on `event_uuid` grows at its right edge instead of taking random inserts.

When the database is unreachable the writer backs off exponentially (`retry_initial` ..
`retry_max`); rows it rejects for their content are retried one by one (then once more
with NUL bytes escaped and strings cut to width), and the offending rows go to the spill
file's `.rejected.jsonl`, so one bad event never blocks the rest.
"""

from __future__ import annotations

import time
from typing import Any

from loguru import logger

from atb.db.bulk import Row, RowWriter
from atb.db.errors import is_unavailable
from atb.db.journal.rows import COLUMNS, TABLE, sanitize_row
from atb.db.journal.spill import SpillFile
from atb.db.journal.status import JournalStatus


class EventWriter:
    """Writes `system_events` rows; the only part of the journal that talks to the DB."""

    def __init__(
        self,
        db: Any,
        spill: SpillFile,
        status: JournalStatus,
        retry_initial: float,
        retry_max: float,
    ) -> None:
        self.db = db
        self.spill = spill
        self.status = status
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.dialect = db.engine.dialect.name
        self._insert = RowWriter(self.dialect, TABLE, COLUMNS, conflict="event_uuid")
        self._backoff = 0.0
        self.next_retry = 0.0

    @property
    def backing_off(self) -> bool:
        return not self.status.db_available and time.monotonic() < self.next_retry

    def reachable(self) -> bool:
        """One connect attempt before a retry reads and decodes a spill batch: while the
        database stays down, a retry costs a refused connection, not 2000 rows of JSON."""
        if self.status.db_available:
            return True
        try:
            with self.db.engine.connect():
                return True
        except Exception as exc:
            if not is_unavailable(exc):
                return True  # not an outage: the insert's own error decides
            self._on_unavailable(exc)
            return False

    def execute(self, rows: list[Row]) -> None:
        with self.db.engine.begin() as conn:
            self._insert(conn, rows)

    def write(self, rows: list[Row], replay: bool = False) -> bool:
        """Insert rows; False (and backoff) if the database is unreachable."""
        if not rows:
            return True
        status = self.status
        written = len(rows)
        try:
            self.execute(rows)
        except Exception as exc:
            if is_unavailable(exc):
                self._on_unavailable(exc)
                return False
            # The database rejected the content: find the bad rows one by one.
            bad = self._write_one_by_one(rows)
            if bad is None:
                return False
            written -= bad
        if replay:
            status.replayed += written
        status.written += written
        status.last_write_at = time.time()
        if not status.db_available:
            logger.info("journal: database reachable again; replaying spilled events")
        status.db_available = True
        self._backoff = 0.0
        # The history stays in errors / last_error_at / rejected.
        status.last_error = None
        return True

    def replay(self, rows: list[Row]) -> bool:
        return self.write(rows, replay=True)

    def _write_one_by_one(self, rows: list[Row]) -> int | None:
        """Insert rows singly; quarantine rejected ones. None if the DB went away."""
        bad: list[Row] = []
        for row in rows:
            error: BaseException | None = None
            for attempt in (row, sanitize_row(row)):
                try:
                    self.execute([attempt])
                    error = None
                    break
                except Exception as exc:
                    if is_unavailable(exc):
                        self._on_unavailable(exc)
                        return None
                    error = exc
            if error is not None:
                self.status.note_error(f"row rejected: {type(error).__name__}: {str(error)[:200]}")
                bad.append(row)
        if bad:
            self.status.rejected += len(bad)
            self.spill.reject(bad)
        return len(bad)

    def _on_unavailable(self, exc: BaseException) -> None:
        status = self.status
        was_available = status.db_available
        self._backoff = (
            self.retry_initial
            if was_available or not self._backoff
            else min(self.retry_max, self._backoff * 2)
        )
        self.next_retry = time.monotonic() + self._backoff
        status.db_available = False
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        status.note_error(f"database unavailable: {reason[0] if reason else type(exc).__name__}")
        if was_available:
            logger.warning(
                "journal: database {} unavailable, spilling events to {} (retry in {:.1f}s): {}",
                self.db.redacted_url,
                self.spill.path,
                self._backoff,
                status.last_error,
            )
