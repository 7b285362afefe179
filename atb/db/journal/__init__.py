"""The event journal (`journal` node): every event, WARNING+ record and alert -> a row.

Callers never wait on the database. The path of one event:

1. The caller (a log-record listener, or `Journal.emit` for alerts/heartbeats) appends the
   record to an in-memory deque: a few hundred nanoseconds, no lock, no I/O. Only when the
   deque holds `queue_size` records does the caller append the event to the spill file
   itself (one JSON line, write + flush to the OS): the queue is bounded, the caller still
   never blocks on the database.
2. A background converter thread wakes every `flush_interval` seconds (or as soon as a
   batch is waiting) and turns records into row tuples; an inserter thread writes them
   `batch_size` at a time, one transaction per batch: SQLite with multi-row `INSERT ...
   VALUES (..), (..) ON CONFLICT (event_uuid) DO NOTHING` statements (<= 1000 rows each),
   PostgreSQL with COPY into a temp table + one `INSERT ... SELECT ... ON CONFLICT DO
   NOTHING`. Event ids are time-ordered (atb.logging.ids), so the unique index on
   `event_uuid` grows at its right edge instead of taking random inserts.
3. When an insert fails because the database is unreachable, the journal appends the batch
   and everything queued to the spill file and retries with exponential backoff
   (`retry_initial` .. `retry_max`). While the database stays down, every converter cycle
   moves the queue to the spill file, so memory stays bounded and events are on disk.
4. When an insert succeeds again, spill files are replayed (oldest first) before the
   queue. Every event carries a UUID and the table has a UNIQUE constraint on it, so a
   batch replayed twice (crash during replay, retry after a timeout that did commit) is
   stored exactly once.
5. `stop()` unregisters the listener, drains the queue into the database (or into the
   spill file if the database is down or `stop_timeout` runs out) and fsyncs the file.
   A spill file left behind is replayed by the next journal started on the same path.

Hard-kill window (SIGKILL, OOM, power loss): what is lost is what was not yet on disk:
- events still in the deque: at most those enqueued during the last `flush_interval`
  (default 0.1 s) plus the duration of one batch insert, never more than `queue_size`;
- on power loss / OS crash only: spill lines written within the last `fsync_interval`
  (default 1 s, the converter fsyncs the spill file at most that often) and, with SQLite's
  default `synchronous=NORMAL` in WAL mode, the last committed transactions.
A process kill alone loses nothing that `write()` reached: the OS keeps the page cache.

Rows the database rejects for their content (not for being unreachable) are retried one by
one; the offending rows go to `<spill_path>.rejected.jsonl` so one bad event never blocks
the rest.

Modules: `rows` (record -> row tuple, spill-file JSON), `writer` (the database side:
exactly-once inserts through atb.db.bulk, backoff, rejected rows), `spill` (the spill
file), `pipeline` (the queue and the two threads), `node` (the `Journal` node itself).
"""

from __future__ import annotations

from atb.db.errors import is_unavailable
from atb.db.journal.node import Journal, JournalConfig
from atb.db.journal.rows import (
    COLUMNS,
    RowBuilder,
    event_type_of,
    format_exception,
    record_to_row,
    row_as_dict,
    row_from_json,
    row_to_json,
    sanitize_row,
)

__all__ = [
    "COLUMNS", "Journal", "JournalConfig", "RowBuilder", "event_type_of", "format_exception",
    "is_unavailable", "record_to_row", "row_as_dict", "row_from_json", "row_to_json",
    "sanitize_row",
]  # fmt: skip
