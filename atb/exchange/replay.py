"""`exchange=replay`: the bundled (or any) candle file served as a live feed, offline.

For demos, dashboards and tests: `python -m atb mode=paper exchange=replay` runs the real
paper loop (polling, stale checks, records, health) with no network at all.

The replay has its own clock. It starts at `start` with `warmup` candles already closed,
then either runs `speed` times faster than real time (`speed: 3600` closes one 1h candle per
second) or, with `step: true`, closes exactly one new candle per poll, which makes a run
deterministic (tests, benchmarks). Candle ages, and therefore stale-data checks, are judged
by this clock. When the file ends the feed is `exhausted` and the engine stops cleanly.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import Field, model_validator

from atb.config.base import NodeConfig, UtcDatetime, field_error
from atb.logging.events import log_data_event
from atb.runtime.context import RunContext
from atb.runtime.node import Node


class ReplayExchangeConfig(NodeConfig):
    path: Path | None = Field(None, description="candle CSV(.gz); null = bundled BTCUSDT 1h")
    start: UtcDatetime | None = Field(
        datetime(2024, 1, 1, tzinfo=UTC), description="replay clock start (UTC); null = warmup"
    )
    warmup: int = Field(500, ge=1, description="candles already closed when the replay starts")
    speed: float = Field(3600.0, gt=0, description="simulated seconds per real second")
    step: bool = Field(False, description="one new candle per poll, whatever the time")
    trading: bool = Field(False, description="must stay false: a replay cannot take real orders")

    @model_validator(mode="after")
    def _offline(self) -> ReplayExchangeConfig:
        if self.trading:
            raise field_error(
                "trading",
                "exchange=replay is offline and cannot place real orders; "
                "use mode=paper (or a real exchange with mode=live)",
            )
        return self


class ReplayExchange(Node[ReplayExchangeConfig]):
    """A `MarketFeed` over a candle file; see the module docstring."""

    def __init__(self, config: NodeConfig, ctx: RunContext, **needs: Any) -> None:
        super().__init__(config, ctx)
        self.symbol = ctx.symbol
        self.timeframe = ctx.timeframe
        self._bars: pd.DataFrame | None = None
        self._first = 0  # index of the first candle closed "after" the start
        self._cursor = 0  # candles closed so far
        self._t0 = 0.0
        self._lock = threading.Lock()
        self._tf_ms = 0
        self._polls = 0

    def start(self) -> None:
        from atb.data.loader import BUNDLED_SYMBOL, BUNDLED_TIMEFRAME, load_bars, timeframe_delta

        cfg = self.config
        if cfg.path is None and (self.symbol, self.timeframe) != (
            BUNDLED_SYMBOL,
            BUNDLED_TIMEFRAME,
        ):
            raise ValueError(
                f"the bundled replay data is {BUNDLED_SYMBOL} {BUNDLED_TIMEFRAME}; "
                "set exchange.path=<candles.csv.gz> for other markets"
            )
        bars: pd.DataFrame = load_bars(cfg.path, self.timeframe)
        delta = timeframe_delta(self.timeframe)
        if delta is None:
            raise ValueError("replay needs a fixed-length timeframe (not months)")
        self._tf_ms = int(delta.total_seconds() * 1000)
        first = cfg.warmup
        if cfg.start is not None:
            first = max(first, int(bars.index.searchsorted(pd.Timestamp(cfg.start))))
        if first >= len(bars):
            raise ValueError(
                f"replay start {cfg.start} leaves no candles to replay (file ends {bars.index[-1]})"
            )
        self._bars = bars
        self._first = self._cursor = first
        self._t0 = time.monotonic()
        log_data_event(
            "replay_started",
            symbol=self.symbol,
            timeframe=self.timeframe,
            first=bars.index[first].isoformat(),
            bars=len(bars) - first,
            speed=cfg.speed,
            step=cfg.step,
            file=str(cfg.path or "bundled"),
        )

    def resume_after(self, last_bar: pd.Timestamp) -> int:
        """Continue the replay after a resumed session's last processed bar.

        A resumed session will not act on a bar it already processed, so replaying from
        `start` again would loop on nothing (bars=0) until the replay caught up. The feed
        jumps instead: candles up to `last_bar` count as closed, the next poll closes the
        one after it. Returns how many candles are left to replay (0: exhausted).
        """
        assert self._bars is not None, "the replay exchange has not started"
        bars = self._bars
        ts = pd.Timestamp(last_bar)
        if ts.tzinfo is None:
            ts = ts.tz_localize("UTC")
        after = int(bars.index.searchsorted(ts, side="right"))
        with self._lock:
            if after <= self._first:
                return len(bars) - self._cursor  # the session is behind the replay start
            self._first = self._cursor = min(after, len(bars))
            self._t0 = time.monotonic()
        left = len(bars) - self._cursor
        log_data_event(
            "replay_resumed",
            level="INFO" if left else "WARNING",
            after=ts.isoformat(),
            next=bars.index[self._cursor].isoformat() if left else None,
            bars=left,
            note=None
            if left
            else "the previous session replayed the whole file: start a new session with "
            "live.resume=false or live.session=<name>",
        )
        return left

    # -- the clock ----------------------------------------------------------------------
    def _sim_start_ms(self) -> int:
        assert self._bars is not None
        return int(self._bars.index[self._first].value // 1_000_000)

    def now_ms(self) -> int:
        """Simulated time: just after the newest closed candle closed (step mode), or
        start + elapsed × speed."""
        assert self._bars is not None
        if self.config.step:
            with self._lock:
                newest_open = int(self._bars.index[self._cursor - 1].value // 1_000_000)
            return newest_open + self._tf_ms
        elapsed = (time.monotonic() - self._t0) * self.config.speed
        return self._sim_start_ms() + int(elapsed * 1000)

    def _advance(self) -> None:
        assert self._bars is not None
        n = len(self._bars)
        with self._lock:
            if self.config.step:
                self._cursor = min(self._cursor + 1, n)
            else:
                now = self.now_ms()
                opens = self._bars.index.asi8 // 1_000_000  # type: ignore[attr-defined]  # pandas-stubs lacks asi8
                closed = int((opens + self._tf_ms <= now).sum())
                self._cursor = max(self._cursor, min(closed, n))
            self._polls += 1

    @property
    def exhausted(self) -> bool:
        return self._bars is not None and self._cursor >= len(self._bars)

    # -- MarketFeed -------------------------------------------------------------------------
    def fetch_candles(self, limit: int) -> pd.DataFrame:
        assert self._bars is not None, "the replay exchange has not started"
        self._advance()
        with self._lock:
            cursor = self._cursor
        return self._bars.iloc[max(0, cursor - limit) : cursor]

    def describe(self) -> dict[str, Any]:
        return {
            "exchange": "replay",
            "url": None,
            "sandbox": False,
            "symbol": self.symbol,
            "trading": False,
            "file": str(self.config.path or "bundled"),
        }

    def state(self) -> dict[str, Any]:
        return {
            **self.describe(),
            "last_error": None,
            "consecutive_failures": 0,
            "replayed": self._cursor - self._first,
            "exhausted": self.exhausted,
        }
