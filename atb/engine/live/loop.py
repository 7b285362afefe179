"""The polling loop of a paper/live session (see the package docstring for the steps).

A failed iteration (exchange unreachable after retries, malformed data, an unexpected
error) waits `cooldown` seconds, doubling up to `cooldown_max`; after
`max_consecutive_failures` in a row the loop raises `LoopFailed` after an ERROR
`engine_failed` event. Time is read and waited through the injected `Clock`.
"""

from __future__ import annotations

from collections import deque

import pandas as pd

from atb.engine.decision import DecisionPath
from atb.engine.inputs import Bar, signal_at, utc_datetime
from atb.engine.live.account import SessionAccount, iso
from atb.engine.live.config import LiveEngineConfig
from atb.engine.live.exchange_execution import ExchangeTimer
from atb.engine.live.freshness import Freshness
from atb.engine.live.recording import SessionRecording
from atb.engine.risk_limits import RiskLimits
from atb.exchange.base import ExchangeUnavailable, MalformedResponse, MarketFeed
from atb.health import metrics as _metrics
from atb.logging.events import log_data_event, log_engine_event
from atb.runtime.clock import Clock
from atb.runtime.context import RunContext
from atb.runtime.probes import Heartbeat
from atb.strategies.base import SignalFrame, Strategy


class LoopFailed(RuntimeError):
    """Too many consecutive failed iterations."""


class SessionLoop:
    def __init__(
        self,
        config: LiveEngineConfig,
        ctx: RunContext,
        *,
        feed: MarketFeed,
        strategy: Strategy,
        path: DecisionPath,
        account: SessionAccount,
        freshness: Freshness,
        recording: SessionRecording,
        limits: RiskLimits,
        heartbeat: Heartbeat,
        clock: Clock,
        timer: ExchangeTimer,
    ) -> None:
        self.config, self.ctx = config, ctx
        self.feed, self.strategy, self.path = feed, strategy, path
        self.execution = path.execution
        self.account, self.freshness, self.recording = account, freshness, recording
        self.limits, self.heartbeat, self.clock, self.timer = limits, heartbeat, clock, timer
        self.iterations = 0
        self.failures = 0
        self.last_error: str | None = None
        self.stats: deque[tuple[float, float]] = deque(maxlen=100_000)
        """(iteration seconds, of which waiting on the exchange) per iteration."""
        self._fetch = timer.wrap(feed.fetch_candles)
        self._warming_logged = False
        self._behind_logged = False

    @property
    def history(self) -> int:
        return self.config.history or min(self.strategy.warmup + 6, 1000)

    def run(self) -> str:
        """Poll until stopped; returns why: signal | max_iterations | feed_exhausted."""
        cfg, ctx, clock = self.config, self.ctx, self.clock
        while True:
            if ctx.stopping:
                return "signal"
            if cfg.max_iterations is not None and self.iterations >= cfg.max_iterations:
                return "max_iterations"
            t0 = clock.monotonic()
            net0 = self.timer.seconds
            ok = self.iteration()
            self.iterations += 1
            elapsed = clock.monotonic() - t0
            self.stats.append((elapsed, self.timer.seconds - net0))
            _metrics.record_iteration(elapsed)
            wait = cfg.check_interval if ok else self._failed()
            if ok and self.feed.exhausted and not ctx.stopping:
                log_data_event(
                    "feed_exhausted",
                    exchange=self.feed.describe().get("exchange"),
                    last_bar=iso(self.account.last_bar),
                )
                return "feed_exhausted"
            if cfg.max_iterations is not None and self.iterations >= cfg.max_iterations:
                return "max_iterations"
            if clock.wait(ctx.stop_event, wait):
                return "signal"

    def _failed(self) -> float:
        """Count a failed iteration; the cooldown to wait, or LoopFailed at the limit."""
        cfg = self.config
        self.failures += 1
        if self.failures >= cfg.max_consecutive_failures:
            log_engine_event(
                "engine_failed",
                level="ERROR",
                message=f"stopping: {self.failures} consecutive failed iterations "
                f"(last error: {self.last_error})",
                failures=self.failures,
                last_error=self.last_error,
            )
            raise LoopFailed(
                f"{self.failures} consecutive failed iterations; last error: {self.last_error}"
            )
        wait = min(cfg.cooldown * 2 ** (self.failures - 1), cfg.cooldown_max)
        self.heartbeat.expect(wait)  # a cooldown is not a stall
        log_engine_event(
            "cooldown",
            level="WARNING",
            failures=self.failures,
            of=cfg.max_consecutive_failures,
            wait_s=wait,
            last_error=self.last_error,
        )
        return wait

    def _fail(self, error: str) -> bool:
        self.last_error = error[:500]
        self.heartbeat.fail(self.last_error)
        return False

    def iteration(self) -> bool:
        try:
            for order in self.execution.reconcile():
                self.recording.write_orders([order])
            frame = self._fetch(self.history)
        except (ExchangeUnavailable, MalformedResponse) as exc:
            log_data_event(
                "data_fetch_failed",
                level="ERROR",
                error=str(exc)[:500],
                failures=self.failures + 1,
            )
            return self._fail(str(exc))
        except Exception as exc:  # a bug must not kill a live session on the first bar
            error = f"{type(exc).__name__}: {exc}"[:500]
            log_engine_event("iteration_failed", level="ERROR", error=error, exc_info=exc)
            return self._fail(error)
        if frame.empty:
            log_data_event(
                "no_data", level="WARNING", symbol=self.ctx.symbol, timeframe=self.ctx.timeframe
            )
            return self._fail("the exchange returned no closed candles")
        now_ms = self.feed.now_ms()
        newest = frame.index[-1]
        self.heartbeat.beat(
            iteration=self.iterations + 1,
            newest_candle=newest.isoformat(),
            stale=self.freshness.stale,
        )
        try:
            if self.freshness.check(
                newest, now_ms, symbol=self.ctx.symbol, timeframe=self.ctx.timeframe
            ):
                return True
            self.process(frame, now_ms)
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            log_engine_event("iteration_failed", level="ERROR", error=error, exc_info=exc)
            return self._fail(error)
        return True

    def process(self, frame: pd.DataFrame, now_ms: int) -> None:
        """Step the decision path once per closed bar this session has not processed."""
        account = self.account
        index = frame.index
        if account.last_bar is None:
            start = len(frame) - 1  # a fresh session acts from the newest closed bar on
        else:
            start = int(index.searchsorted(account.last_bar, side="right"))
            if start >= len(frame) and index[-1] < account.last_bar and not self._behind_logged:
                # Never loop on nothing silently: the feed serves bars the session has
                # already processed (a feed that restarted, a clock behind the session).
                self._behind_logged = True
                log_data_event(
                    "feed_behind_session",
                    level="WARNING",
                    newest=index[-1].isoformat(),
                    last_processed=iso(account.last_bar),
                    note="nothing is traded until the feed passes the session's last bar; "
                    "live.resume=false starts a new session",
                )
        warmup = self.strategy.warmup
        tf_ms = self.freshness.tf_ms
        stamps = index.asi8  # type: ignore[attr-defined]  # pandas-stubs lacks asi8
        values = frame[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)
        for j in range(start, len(frame)):
            if self.ctx.stopping:
                break
            o, h, low, c, v = values[j].tolist()
            bar = Bar(account.bar_index, utc_datetime(int(stamps[j])), o, h, low, c, v)
            fresh = self.freshness.bar_is_fresh(int(stamps[j] // 1_000_000) + tf_ms, now_ms)
            signals: SignalFrame | None = None
            if fresh and j >= warmup and not self.execution.blocked:
                # (no new decision while an order's outcome is unknown: it could duplicate it)
                signals = self.strategy.signals(frame.iloc[j - warmup : j + 1])
            elif j < warmup and not self._warming_logged:
                self._warming_logged = True
                log_engine_event(
                    "warming_up",
                    level="WARNING",
                    have=j + 1,
                    need=warmup + 1,
                    note="raise live.history to fetch more candles",
                )
            signal = signal_at(signals, len(signals) - 1) if signals is not None else None
            step = self.path.on_bar(bar, None if signal is None or signal.is_hold else signal)
            self.execution.submit(bar, step)
            account.last_bar = index[j]
            account.bar_index += 1
            equity, drawdown = account.mark(bar.close)
            self.limits.check(bar.time, equity, account.peak_equity)
            self.recording.record_bar(bar, step, signals, equity, drawdown)
