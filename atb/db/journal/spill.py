"""The journal's spill file: rows the database could not take yet, one JSON array a line.

Every line goes through the run's redactor first (`rows.redact_row`): the file is a
boundary of its own. Appends are flushed to the OS at once (a process kill loses nothing
written) and fsynced at most every `fsync_interval` (the power-loss window). A replay
rotates the live file away first, so new spills go to a fresh file while the old one is
read; a file is deleted only once every line of it is in the database. Several processes
may share one path (a multirun's jobs on one SQLite file): appends and rotations take the
file's flock.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from atb.db.bulk import Row
from atb.db.journal.rows import redact_row, row_from_json, row_to_json
from atb.db.journal.status import JournalStatus
from atb.logging.redaction import get_redactor

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: one journal per spill path
    fcntl = None  # type: ignore[assignment]


def _lock(fh: Any) -> None:
    if fcntl is not None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)


def _unlock(fh: Any) -> None:
    if fcntl is not None:
        with contextlib.suppress(OSError, ValueError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


class SpillFile:
    """Append, fsync, rotate and replay one spill path; counts go to `status`."""

    def __init__(self, path: Path, status: JournalStatus, ts_text: bool) -> None:
        self.path = path
        self.rejected_path = path.with_name(path.name + ".rejected.jsonl")
        self.status = status
        self.ts_text = ts_text  # SQLite: replayed timestamps as SQLAlchemy's DateTime text
        self.lock = threading.Lock()
        self._file: Any = None
        self._last_fsync = 0.0
        status.spill_pending = self.count_pending()

    def _lines(self, rows: Iterable[Row]) -> list[str]:
        # Every file atb writes goes through the run's redactor, this one included.
        red = get_redactor()
        return [row_to_json(redact_row(r, red)) + "\n" for r in rows]

    def append(self, rows: Iterable[Row]) -> None:
        lines = self._lines(rows)
        if not lines:
            return
        status = self.status
        with self.lock:
            try:
                fh = self._locked_file()
                try:
                    fh.writelines(lines)
                    # flush() hands the lines to the OS: they survive a kill of this process.
                    fh.flush()
                finally:
                    _unlock(fh)
            except OSError as exc:
                status.dropped += len(lines)
                status.note_error(f"spill file {self.path}: {exc}")
                return
            status.spilled += len(lines)
            status.spill_pending += len(lines)

    def reject(self, rows: list[Row]) -> None:
        """Rows the database refused for their content: kept aside, never replayed."""
        lines = self._lines(rows)
        with self.lock, self.rejected_path.open("a", encoding="utf-8") as fh:
            fh.writelines(lines)

    def _locked_file(self) -> Any:
        """The live spill file, flock-ed, reopened if another journal rotated it away.

        An append first checks that its descriptor is still the file at `path`: nothing is
        ever appended to a file that a replay has already rotated away (and may be reading
        or deleting).
        """
        for _ in range(10):
            if self._file is None:
                self._file = self.path.open("a", encoding="utf-8")
            fh = self._file
            _lock(fh)
            try:
                current = os.stat(self.path).st_ino == os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                current = False
            if current:
                return fh
            _unlock(fh)
            self._file = None
            with contextlib.suppress(OSError):
                fh.close()
        raise OSError(f"spill file {self.path} keeps being rotated away")

    def maybe_fsync(self, interval: float) -> None:
        if self._file is None:
            return
        now = time.monotonic()
        if now - self._last_fsync >= interval:
            self._last_fsync = now
            with self.lock, contextlib.suppress(OSError, ValueError):
                if self._file is not None:
                    os.fsync(self._file.fileno())

    def close(self, fsync: bool) -> None:
        with self.lock:
            fh, self._file = self._file, None
            if fh is not None:
                with contextlib.suppress(OSError, ValueError):
                    fh.flush()
                    if fsync:
                        os.fsync(fh.fileno())
                    fh.close()

    def pending_files(self) -> list[Path]:
        rotated = sorted(self.path.parent.glob(self.path.name + ".replay-*"))
        return [*rotated, self.path] if self.path.exists() else rotated

    def count_pending(self) -> int:
        total = 0
        for path in self.pending_files():
            with contextlib.suppress(OSError), path.open("rb") as fh:
                total += sum(1 for _ in fh)
        return total

    def replay(self, write: Callable[[list[Row]], bool], batch: int) -> bool:
        """Hand every spill file to `write` in batches, oldest first; False as soon as a
        batch fails (the database went down again)."""
        self._rotate()
        for path in self.pending_files():
            if path == self.path:
                continue  # appended to since the rotation: next time
            if not self._replay_file(path, write, batch):
                return False
        return True

    def _rotate(self) -> None:
        with self.lock:
            if not self.path.exists():
                return
            try:
                fh = self._locked_file()
                rotated = self.path.with_name(
                    f"{self.path.name}.replay-{time.time_ns():020d}-{os.getpid()}"
                )
                os.replace(self.path, rotated)
                _unlock(fh)
                fh.close()
            except OSError as exc:
                self.status.note_error(f"spill file {self.path}: {exc}")
            self._file = None

    def _replay_file(self, path: Path, write: Callable[[list[Row]], bool], batch: int) -> bool:
        status = self.status
        rows: list[Row] = []
        lines = 0
        try:
            fh = path.open("r", encoding="utf-8", errors="replace")
        except FileNotFoundError:  # replayed and deleted by another journal on this path
            status.spill_pending = self.count_pending()
            return True
        with fh:
            for line in fh:
                lines += 1
                try:
                    rows.append(row_from_json(line, self.ts_text))
                except (ValueError, TypeError):
                    # A torn last line from a hard kill mid-write: nothing to recover.
                    status.dropped += 1
                    continue
                if len(rows) >= batch:
                    if not write(rows):
                        return False  # the file stays; replayed from its start next time
                    rows = []
        if not write(rows):
            return False
        path.unlink(missing_ok=True)
        # A partly replayed file is replayed again from its start: the UNIQUE uuid makes
        # that harmless. Only a fully replayed (deleted) file leaves the pending count.
        with self.lock:
            status.spill_pending = max(0, status.spill_pending - lines)
        return True
