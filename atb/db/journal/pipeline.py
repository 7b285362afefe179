"""The journal's queue and its two threads.

Callers append records to a deque (no lock, no I/O). Two background threads form a
pipeline so that, on a multi-core machine, turning records into rows (Python, holds the
GIL) overlaps with the database's own work (SQLite's B-tree inserts and the PostgreSQL
server run without the GIL):

- `atb-journal` (converter): wakes every `flush_interval` (or as soon as a batch is
  waiting), builds row tuples and hands batches to the inserter through a 2-batch pipe;
  while the database is down it appends the queue to the spill file instead, so memory
  stays bounded and a hard kill during the outage loses at most one `flush_interval`;
- `atb-journal-db` (inserter): the only thread that talks to the database: replays spill
  files first (oldest first), inserts batches, spills a batch that fails; the writer owns
  the backoff.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from atb.db.bulk import Row
from atb.db.journal.spill import SpillFile
from atb.db.journal.status import JournalStatus
from atb.db.journal.writer import EventWriter


class Pipeline:
    """Queue -> converter thread -> pipe -> inserter thread -> database (or spill file)."""

    def __init__(
        self,
        to_row: Callable[[Mapping[str, Any]], Row],
        writer: EventWriter,
        spill: SpillFile,
        status: JournalStatus,
        *,
        batch_size: int,
        flush_interval: float,
        stop_timeout: float,
        fsync_interval: float,
    ) -> None:
        self.queue: deque[Mapping[str, Any]] = deque()
        self.wake = threading.Event()
        self.to_row = to_row
        self.writer = writer
        self.spill = spill
        self.status = status
        self.batch = batch_size
        self.flush_interval = flush_interval
        self.stop_timeout = stop_timeout
        self.fsync_interval = fsync_interval
        self._stopping = threading.Event()
        self._converter: threading.Thread | None = None
        self._inserter: threading.Thread | None = None
        self._pipe: queue.Queue[list[Row] | None] = queue.Queue(maxsize=2)
        self._inflight: list[Row] = []  # converter: taken from the deque, not yet piped
        self._db_inflight: list[Row] = []  # inserter: being written

    @property
    def running(self) -> bool:
        return self._converter is not None and self._converter.is_alive()

    def start(self) -> None:
        self._stopping.clear()
        self._inserter = threading.Thread(target=self._insert_loop, name="atb-journal-db")
        self._converter = threading.Thread(target=self._convert_loop, name="atb-journal")
        self._inserter.daemon = self._converter.daemon = True
        self._inserter.start()
        self._converter.start()

    def stop(self) -> None:
        """Drain the queue into the database within `stop_timeout`, the rest to disk."""
        self._stopping.set()
        self.wake.set()
        deadline = time.monotonic() + self.stop_timeout + 1.0
        for thread in (self._converter, self._inserter):
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        if self._inserter is not None and self._inserter.is_alive():
            # Stuck in a database call: keep its batch, the pipe and the queue on disk.
            # Replay deduplicates whatever the stuck insert may still commit.
            self.spill.append(list(self._db_inflight))
            self._drain_pipe_to_spill()
        if self._converter is None or not self._converter.is_alive():
            self.spill.append(list(self._inflight))
            self._inflight = []
            self._spill_queue()
        self.spill.close(fsync=True)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued event is written (or spilled); True if done in time."""
        deadline = time.monotonic() + timeout
        while True:
            idle = not self.queue and not self._inflight and not self._pipe.unfinished_tasks
            if idle or time.monotonic() >= deadline:
                return idle
            self.wake.set()
            time.sleep(0.005)

    # -- converter thread -------------------------------------------------------------

    def _convert_loop(self) -> None:
        while True:
            self.wake.wait(self.flush_interval)
            self.wake.clear()
            stopping = self._stopping.is_set()
            t0 = time.thread_time()
            try:
                self._convert(stopping)
            except Exception as exc:  # the pipeline must survive anything
                self.status.note_error(f"journal converter: {type(exc).__name__}: {exc}")
                self.spill.append(list(self._inflight))
                self._inflight = []
                self._spill_queue()
            self.spill.maybe_fsync(self.fsync_interval)
            self.status.cpu_seconds["convert"] += time.thread_time() - t0
            if stopping:
                self._pipe_put(None, time.monotonic() + self.stop_timeout)
                return

    def _convert(self, stopping: bool) -> None:
        deadline = time.monotonic() + self.stop_timeout if stopping else None
        while self.queue:
            if not self.status.db_available:
                # Backing off: move the queue to disk so memory stays bounded and a hard
                # kill during the outage loses at most the last flush_interval.
                self._spill_queue()
                return
            rows = self._take(self.batch)
            if not self._pipe_put(rows, deadline):
                self.spill.append(rows)
                self._inflight = []
                self._spill_queue()
                return
            self._inflight = []

    def _pipe_put(self, rows: list[Row] | None, deadline: float | None) -> bool:
        """Hand a batch to the inserter; waiting is the database's backpressure."""
        while True:
            try:
                self._pipe.put(rows, timeout=0.05)
                return True
            except queue.Full:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                if rows is not None and not self.status.db_available:
                    return False

    def _take(self, n: int) -> list[Row]:
        # A new list per batch, published as _inflight so stop() can save it.
        dq, to_row = self.queue, self.to_row
        rows: list[Row] = []
        self._inflight = rows
        pop = dq.popleft
        for _ in range(min(n, len(dq))):
            try:
                rows.append(to_row(pop()))
            except IndexError:
                break
            except Exception as exc:
                self.status.dropped += 1
                self.status.note_error(f"unconvertible record dropped: {exc}")
        return rows

    def _spill_queue(self) -> None:
        while self.queue:
            self.spill.append(self._take(self.batch))
            self._inflight = []

    # -- inserter thread --------------------------------------------------------------

    def _insert_loop(self) -> None:
        while True:
            try:
                rows = self._pipe.get(timeout=self.flush_interval)
            except queue.Empty:
                self._idle_retry()
                continue
            try:
                if rows is None:  # the converter has stopped
                    return
                self._db_inflight = rows
                t0 = time.thread_time()
                self._insert_batch(rows)
                self.status.cpu_seconds["insert"] += time.thread_time() - t0
            except Exception as exc:
                self.status.note_error(f"journal inserter: {type(exc).__name__}: {exc}")
                self.spill.append(self._db_inflight)
            finally:
                self._db_inflight = []
                self._pipe.task_done()

    def _insert_batch(self, rows: list[Row]) -> None:
        writer = self.writer
        if writer.backing_off or not writer.reachable():
            self.spill.append(rows)
            return
        if self.status.spill_pending and not self.spill.replay(writer.replay, self.batch):
            self.spill.append(rows)
            return
        if not writer.write(rows):
            self.spill.append(rows)

    def _idle_retry(self) -> None:
        """Nothing to insert: use the time to recover from an outage or drain spill files."""
        status = self.status
        if status.db_available and not status.spill_pending:
            return
        if self.writer.backing_off:
            return
        if status.spill_pending:
            if self.writer.reachable():
                self.spill.replay(self.writer.replay, self.batch)
        else:
            status.db_available = True  # nothing to prove it with: the next batch will tell

    def _drain_pipe_to_spill(self) -> None:
        while True:
            try:
                rows = self._pipe.get_nowait()
            except queue.Empty:
                return
            if rows:
                self.spill.append(rows)
            self._pipe.task_done()
