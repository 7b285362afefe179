"""Is the feed's newest candle fresh enough to trade on?

Stale when the newest closed candle is older than `stale_after` (default 2 × timeframe),
or when the same candle comes back for `stale_polls` polls after a new one was due. The
first stale poll logs `stale_data` (nothing is traded until fresh data returns); the first
fresh one after that logs `data_recovered`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from atb.health import metrics as _metrics
from atb.logging.events import log_data_event


class Freshness:
    def __init__(self, *, tf_ms: int, stale_after: float | None, stale_polls: int) -> None:
        self.tf_ms = tf_ms
        self.stale_after = stale_after
        self.stale_polls = stale_polls
        self.stale = False
        self.reason: str | None = None
        self.newest: pd.Timestamp | None = None
        self.newest_close_ms: int | None = None
        self.same_polls = 0

    def bar_is_fresh(self, bar_close_ms: int, now_ms: int) -> bool:
        """Whether a bar closing at `bar_close_ms` is recent enough to act on."""
        return self.stale_after is None or (now_ms - bar_close_ms) / 1000 <= self.stale_after

    def check(self, newest: pd.Timestamp, now_ms: int, *, symbol: str, timeframe: str) -> bool:
        """Judge this poll's newest candle; True when the data is stale."""
        close_ms = int(newest.value // 1_000_000) + self.tf_ms
        age = (now_ms - close_ms) / 1000
        if self.newest is not None and newest == self.newest and now_ms >= close_ms + self.tf_ms:
            self.same_polls += 1
        elif self.newest is None or newest != self.newest:
            self.same_polls = 0
        self.newest, self.newest_close_ms = newest, close_ms
        _metrics.set_candle_age(max(age, 0.0))
        reason = None
        if self.stale_after is not None and age > self.stale_after:
            reason = f"newest candle closed {age:.0f} s ago (max {self.stale_after:g} s)"
        elif self.same_polls >= self.stale_polls:
            reason = f"same newest candle for {self.same_polls} polls after a new one was due"
        if reason is not None:
            if not self.stale:
                log_data_event(
                    "stale_data",
                    level="WARNING",
                    symbol=symbol,
                    timeframe=timeframe,
                    newest=newest.isoformat(),
                    age_s=round(age, 3),
                    polls=self.same_polls,
                    reason=reason,
                    note="not trading until fresh candles arrive",
                )
            self.stale, self.reason = True, reason
            _metrics.set_data_stale(True)
            return True
        if self.stale:
            log_data_event(
                "data_recovered", symbol=symbol, newest=newest.isoformat(), age_s=round(age, 3)
            )
        self.stale, self.reason = False, None
        _metrics.set_data_stale(False)
        return False

    def probe(self, now_ms: int) -> dict[str, Any]:
        """The freshness part of the `data` probe."""
        state: dict[str, Any] = {"stale": self.stale, "stale_reason": self.reason}
        if self.newest_close_ms is not None and self.newest is not None:
            state["newest_candle_time"] = self.newest.isoformat()
            state["newest_candle_age_seconds"] = max(0.0, (now_ms - self.newest_close_ms) / 1000)
        return state
