"""The write-ahead log of a paper/live session's records: the loop never waits on the DB.

Every record write of a session (one bar's orders, positions, trades, decision,
prediction, account row and state snapshot; an order announced before it is sent; the
run's close) is one *op*: a JSON line appended to `<dir>/records-<run_id>.jsonl` and
flushed to the OS before the caller goes on. That is all the trading loop does; it never
touches the database, so a database that is down, slow or locked costs it nothing.

A background thread applies the ops to the database in file order, a batch per
transaction, through atb.db.record_ops: every op carries a sequence number, and the
transaction that applies it also stores that number in the run's row
(`runs.metrics["records_seq"]`), so applying an op is atomic and idempotent. Exactly
once, without a unique index.

When the database is unreachable (connection refused, server restarted, SQLite file
locked past its busy timeout), the thread backs off (`retry_initial` doubling to
`retry_max`) and resumes where it stopped; the file holds everything meanwhile, so memory
stays flat however long the outage. When the file has been applied to its end it is
truncated; after the run's close op is applied it is deleted.

The owner holds an exclusive flock on its file. A file left behind by a process that died
(kill -9, OOM, power loss) or stopped while the database was down is unlocked: the next
session on the same directory replays it before it resumes (`replay_orphans`), or an
operator applies it without starting a session: `atb db records`.

Loss window: a process kill loses nothing that `append` returned from (the OS has it);
power loss / OS crash can lose the ops appended within the last `fsync_interval`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from loguru import logger

from atb.db.errors import is_unavailable
from atb.db.record_ops import Op, apply_ops, encode_op, log_path, replay_orphans
from atb.logging.redaction import get_redactor

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

# The session side lives here; the op format and applying it are the db package's.
__all__ = ["Op", "RecordLog", "apply_ops", "encode_op", "log_path", "replay_orphans"]


class RecordLog:
    """One session's write-ahead record log; see the module docstring."""

    def __init__(
        self,
        engine: Any,
        path: Path,
        run_id: str,
        *,
        batch_ops: int = 200,
        retry_initial: float = 0.25,
        retry_max: float = 5.0,
        fsync_interval: float = 1.0,
        on_error: Callable[[str, str], None] | None = None,
    ) -> None:
        self.engine = engine
        self.path = path
        self.run_id = run_id
        self.batch_ops = batch_ops
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.fsync_interval = fsync_interval
        self.on_error = on_error
        self.seq = 0
        self.appended = 0
        self.applied = 0
        self.skipped = 0
        self.rejected = 0
        self.rejected_path = path.with_name(path.name.replace("records-", "rejected-", 1))
        self.db_available = True
        self.last_error: str | None = None
        self.append_failures = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        # Ends a backoff early: set by flush()/close() only, never by the loop's appends.
        self._kick = threading.Event()
        self._fh: Any = None
        self._read_pos = 0
        self._backoff = 0.0
        self._retry_at = 0.0
        self._last_fsync = time.monotonic()
        self._thread: threading.Thread | None = None

    # -- owner side (the trading loop) ----------------------------------------------------
    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("ab")
        if fcntl is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._fh.truncate(0)  # a file of this run id can only be a leftover of this process
        self._read_pos = 0
        self._thread = threading.Thread(target=self._run, name="atb-record-log", daemon=True)
        self._thread.start()

    def append(self, op: Op) -> bool:
        """Write one op to the file (the loop's only cost); False if the disk refused it."""
        # Every file atb writes goes through the run's one redactor: an exchange that
        # echoes a key in a rejection note must not leave it in this file either.
        op = get_redactor().redact_text_values(op)
        with self._lock:
            self.seq += 1
            op = {"seq": self.seq, "run_id": self.run_id, **op}
            try:
                self._fh.write(encode_op(op))
                self._fh.flush()
            except (OSError, ValueError) as exc:
                self.append_failures += 1
                self._report("record_log_write_failed", f"{self.path}: {exc}")
                return False
            self.appended += 1
        self._wake.set()
        return True

    @property
    def pending(self) -> int:
        return self.appended - self.applied - self.skipped

    def flush(self, timeout: float) -> bool:
        """Wait until every appended op is in the database; True if done in time."""
        deadline = time.monotonic() + timeout
        self._kick.set()  # one retry now rather than at the end of the backoff
        while self.pending > 0:
            if time.monotonic() >= deadline:
                return False
            self._wake.set()
            time.sleep(0.01)
        return True

    def close(self, timeout: float) -> bool:
        """Drain (up to `timeout`), stop the thread; delete the file if all is applied."""
        done = self.flush(timeout)
        self._stop.set()
        self._wake.set()
        self._kick.set()
        if self._thread is not None:
            self._thread.join(timeout=max(1.0, timeout))
        with self._lock:
            fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError, ValueError):
                fh.flush()
                os.fsync(fh.fileno())
            if done and self.pending <= 0:
                self.path.unlink(missing_ok=True)
            fh.close()  # releases the flock: a leftover file is now an orphan to replay
        if not done:
            logger.warning(
                "records: {} op(s) of run {} not yet in the database; kept in {} and "
                "written by the next session on this database",
                self.pending,
                self.run_id,
                self.path,
            )
        return done

    def state(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "appended": self.appended,
            "applied": self.applied,
            "pending": self.pending,
            "db_available": self.db_available,
            "last_error": self.last_error,
            "append_failures": self.append_failures,
            "rejected": self.rejected,
            "running": self._thread is not None and self._thread.is_alive(),
            "read_pos": self._read_pos,
        }

    # -- the applier thread ---------------------------------------------------------------
    def _run(self) -> None:
        reader = self.path.open("rb")
        try:
            while True:
                if self.db_available:
                    self._wake.wait(0.1)
                else:
                    # Backing off: the loop's appends must not wake us (one connect attempt
                    # per iteration would compete with the loop for the GIL all outage).
                    self._kick.wait(max(self._retry_at - time.monotonic(), 0.0))
                    self._kick.clear()
                self._wake.clear()
                try:
                    if self.db_available or self._reachable():
                        self._drain(reader)
                except Exception as exc:  # the applier must outlive anything
                    self._failed(exc)
                self._maybe_fsync()
                if self._stop.is_set():
                    return
        finally:
            reader.close()

    def _drain(self, reader: Any) -> None:
        while True:
            reader.seek(self._read_pos)
            lines: list[bytes] = []
            for line in reader:
                if not line.endswith(b"\n"):
                    break  # being written: next time
                lines.append(line)
                if len(lines) >= self.batch_ops:
                    break
            if not lines:
                self._truncate_if_done()
                return
            ops = [orjson.loads(line) for line in lines]
            try:
                self._apply(ops)
            except Exception as exc:
                if is_unavailable(exc) or not self._one_by_one(lines, ops):
                    self._failed(exc if is_unavailable(exc) else None)
                    return
                continue
            self._read_pos += sum(len(line) for line in lines)

    def _apply(self, ops: list[Op]) -> None:
        with self.engine.begin() as conn:
            applied = apply_ops(conn, ops)
        self._recovered()
        self.applied += applied
        self.skipped += len(ops) - applied

    def _one_by_one(self, lines: list[bytes], ops: list[Op]) -> bool:
        """The database refused a batch for its content: apply op by op and quarantine the
        ones it refuses (`rejected-<run_id>.jsonl`), so one bad row never blocks the rest.
        False if the database went away meanwhile."""
        for line, op in zip(lines, ops, strict=True):
            try:
                self._apply([op])
            except Exception as exc:
                if is_unavailable(exc):
                    self._failed(exc)
                    return False
                # The database answered (it refused the content): it is back, even if every
                # held op is refused; staying "down" with the retry time past would re-probe
                # without ever sleeping.
                self._recovered()
                self.rejected += 1
                self.skipped += 1
                text = f"{type(exc).__name__}: {str(getattr(exc, 'orig', None) or exc)[:200]}"
                with contextlib.suppress(OSError), self.rejected_path.open("ab") as fh:
                    fh.write(line)
                self._report("record_write_rejected", f"op {op.get('seq')}: {text}")
            self._read_pos += len(line)
        return True

    def _reachable(self) -> bool:
        """One connect attempt before reading and decoding a batch for a database that was
        down: while it stays down, a retry costs a refused connection, not a batch's JSON."""
        try:
            with self.engine.connect():
                return True
        except Exception as exc:
            if not is_unavailable(exc):
                return True  # not an outage: let the batch's own error decide
            self._failed(exc)
            return False

    def _recovered(self) -> None:
        if not self.db_available:
            logger.info("records: database reachable again; writing the held records")
        self.db_available, self._backoff, self.last_error = True, 0.0, None

    def _truncate_if_done(self) -> None:
        with self._lock:
            if self._fh is None or self._read_pos == 0:
                return
            with contextlib.suppress(OSError, ValueError):
                if os.fstat(self._fh.fileno()).st_size == self._read_pos:
                    self._fh.truncate(0)
                    self._read_pos = 0

    def _failed(self, exc: BaseException | None) -> None:
        if exc is None:
            return  # already handled by _one_by_one
        message = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        text = f"{type(exc).__name__}: {message[0] if message else ''}"[:300]
        self.last_error = text
        was = self.db_available
        self.db_available = False
        self._backoff = (
            self.retry_initial
            if was or not self._backoff
            else min(self.retry_max, self._backoff * 2)
        )
        self._retry_at = time.monotonic() + self._backoff
        if was:
            logger.warning(
                "records: database unavailable, holding session records in {} (retry in "
                "{:.2f}s): {}",
                self.path,
                self._backoff,
                text,
            )

    def _maybe_fsync(self) -> None:
        now = time.monotonic()
        if now - self._last_fsync < self.fsync_interval:
            return
        self._last_fsync = now
        with self._lock, contextlib.suppress(OSError, ValueError):
            if self._fh is not None:
                os.fsync(self._fh.fileno())

    def _report(self, name: str, error: str) -> None:
        self.last_error = error
        if self.on_error is not None:
            with contextlib.suppress(Exception):
                self.on_error(name, error)
