"""Per-route rate limiting and the daily summary's period."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass
class RouteLimiter:
    """At most `limit` sends per `per` seconds; the rest are counted, not sent."""

    limit: int
    per: float
    sent: deque[float] = field(default_factory=deque)
    held: int = 0
    held_total: int = 0
    held_since: float | None = None

    def allow(self, now: float) -> bool:
        while self.sent and now - self.sent[0] >= self.per:
            self.sent.popleft()
        if self.limit and len(self.sent) >= self.limit:
            self.held += 1
            self.held_total += 1
            if self.held_since is None:
                self.held_since = now
            return False
        self.sent.append(now)
        return True

    def release_held(self, now: float, force: bool = False) -> int:
        """The count to report once the window has room again (0: nothing to report);
        `force`: now, whatever the window (the session is ending)."""
        if not self.held:
            return 0
        while self.sent and now - self.sent[0] >= self.per:
            self.sent.popleft()
        if self.limit and len(self.sent) >= self.limit and not force:
            return 0
        self.sent.append(now)
        held, self.held, self.held_since = self.held, 0, None
        return held


@dataclass
class Period:
    """What the daily summary reports: the trades closed since the last one."""

    started: float
    trades: int = 0
    wins: int = 0
    pnl: float = 0.0
    max_drawdown: float = 0.0
