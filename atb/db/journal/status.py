"""The journal's figures, shared by its parts and read by `Journal.state()`.

Plain numbers, each written by one thread (spill counters under the spill lock) and read
racily by the health server: a figure a few events stale is fine, a lock on the callers'
path is not.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class JournalStatus:
    enqueued: int = 0
    written: int = 0
    spilled: int = 0
    overflowed: int = 0  # spilled by callers because the queue was full
    replayed: int = 0
    rejected: int = 0
    dropped: int = 0
    errors: int = 0
    spill_pending: int = 0
    db_available: bool = True
    last_error: str | None = None
    """The *current* problem (health checks degrade on it); None once a write succeeds."""
    last_error_at: float | None = None
    last_write_at: float | None = None
    # CPU time of each pipeline thread (benchmarks: which stage is the bottleneck).
    cpu_seconds: dict[str, float] = field(default_factory=lambda: {"convert": 0.0, "insert": 0.0})

    def note_error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = time.time()
        self.errors += 1
