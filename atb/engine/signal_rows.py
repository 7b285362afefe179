"""A SignalFrame's non-HOLD rows as the backtest driver reads them.

Two jobs, both for the hot loop:
- `at(i)`: bar i's Signal (None on HOLD): all built up front when there are few signals,
  each built when the driver steps onto it when there are many;
- "quiet" signals: with the position side fixed and no order pending, a signal's decision
  is a pure function of (direction, size > 0, side, allow_shorts). BUY while long, SELL
  while short, SELL while flat without shorts and a zero size while flat all decide
  "none" with a fixed reason. `next_acting(i, side)` finds the next bar whose signal can
  do something, and `quiet()` hands the skipped bars to the DecisionLog as columns, so
  ml_basic's ~850k do-nothing signals on a million bars cost one vectorised pass instead
  of 850k steps. `risk.decide` stays the one definition of what a signal means; the
  tests check a backtest that steps every bar decides exactly the same.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable
from itertools import repeat

import numpy as np

from atb.engine.decision_log import DecisionLog
from atb.engine.inputs import Signal
from atb.engine.risk import (
    ALREADY_LONG,
    ALREADY_SHORT,
    SHORTS_DISABLED,
    ZERO_SIZE,
    RiskSettings,
)
from atb.strategies.base import BUY, HOLD, SELL, SignalFrame

# Below this many signals every Signal is built up front and `at` is a dict lookup (the
# 18k-bar loop's case); above it they are built as the driver steps onto them.
_EAGER_SIGNALS = 50_000


class SignalRows:
    def __init__(self, frame: SignalFrame, risk: RiskSettings) -> None:
        direction = np.asarray(frame.direction)
        active = np.flatnonzero(direction != HOLD)
        self.active = active
        self.bars: list[int] = active.tolist()
        dirs = direction[active].astype(np.int64)
        size = np.asarray(frame.size, dtype=float)[active]
        self._dirs = dirs
        self._given_reason = frame.reason

        def floats(arr: np.ndarray | None) -> np.ndarray:
            if arr is None:
                return np.full(len(active), np.nan)
            return np.asarray(arr, dtype=float)[active]

        stop_loss, take_profit = floats(frame.stop_loss), floats(frame.take_profit)
        self._confidence = floats(frame.confidence)  # NaN means "none"
        self.few = len(active) <= _EAGER_SIGNALS
        if self.few:
            self.at: Callable[[int], Signal | None] = self._eager(size, stop_loss, take_profit)
        else:
            self.at = self._lazy(size, stop_loss, take_profit)

        # The size risk.decide would give, vectorised the same way: NaN propagates and is
        # not <= 0, exactly as Python's max/min do with it there.
        wanted = (
            np.full(len(active), risk.position_size) if risk.position_size is not None else size
        )
        sized = ~(np.minimum(np.maximum(wanted, 0.0), risk.max_position) <= 0)
        buy, sell = dirs == BUY, dirs == SELL
        # Anything else (a strategy off its -1/0/1 contract) is stepped on every side, so
        # risk.decide gives it its own answer ("hold") instead of a side's fixed reason.
        odd = ~(buy | sell)
        self.allow_shorts = risk.allow_shorts
        flat_acts = buy & sized | (sell & sized & risk.allow_shorts)
        # Per position side, the bars whose signal does something (sorted); the driver's
        # loop reads it directly.
        self.acting = {
            1: active[sell | odd].tolist(),
            -1: active[buy | odd].tolist(),
            0: active[flat_acts | odd].tolist(),
        }

    def _eager(
        self, size: np.ndarray, stop_loss: np.ndarray, take_profit: np.ndarray
    ) -> Callable[[int], Signal | None]:
        """Every Signal built now; `at` is the dict's own get."""

        def listed(arr: np.ndarray) -> Iterable[float | None]:
            if np.isnan(arr).all():  # an absent column: no list to build
                return repeat(None)
            return [None if v != v else v for v in arr.tolist()]

        given = self._given_reason
        reasons = [given[i] for i in self.bars] if given is not None else repeat(None)
        rows = zip(
            self._dirs.tolist(),
            size.tolist(),
            listed(stop_loss),
            listed(take_profit),
            listed(self._confidence),
            reasons,
            strict=False,  # an absent column is an endless repeat(None)
        )
        # tuple.__new__ mapped over the ready rows: no Python frame per Signal
        return dict(zip(self.bars, map(tuple.__new__, repeat(Signal), rows), strict=True)).get

    def _lazy(
        self, size: np.ndarray, stop_loss: np.ndarray, take_profit: np.ndarray
    ) -> Callable[[int], Signal | None]:
        """A Signal built when the driver steps onto its bar: with many signals most are
        quiet and never stepped, and a million Python rows would cost more than the run."""
        active, dirs, confidence, reasons = (
            self.active, self._dirs, self._confidence, self._given_reason
        )  # fmt: skip
        n = len(active)

        def opt(value: float) -> float | None:
            return None if value != value else value

        def at(i: int) -> Signal | None:
            k = int(np.searchsorted(active, i))
            if k == n or active[k] != i:
                return None
            return Signal(
                int(dirs[k]),
                float(size[k]),
                opt(float(stop_loss[k])),
                opt(float(take_profit[k])),
                opt(float(confidence[k])),
                reasons[i] if reasons is not None else None,
            )

        return at

    def next_acting(self, i: int, side: int) -> int | None:
        """The first bar after i whose signal does something with the position on `side`."""
        acting = self.acting[side]
        k = bisect_right(acting, i)
        return acting[k] if k < len(acting) else None

    def quiet(self, lo: int, hi: int, side: int, closes: np.ndarray, log: DecisionLog) -> None:
        """Record the signals on bars [lo, hi) as decided "none": all quiet given `side`."""
        k0, k1 = bisect_left(self.bars, lo), bisect_left(self.bars, hi)
        if k0 >= k1:
            return
        idx = self.active[k0:k1]
        dirs = self._dirs[k0:k1]
        reasons: list[str | None] | str
        if side > 0:
            reasons = ALREADY_LONG
        elif side < 0:
            reasons = ALREADY_SHORT
        else:
            given = self._given_reason
            reasons = [
                SHORTS_DISABLED
                if d == SELL and not self.allow_shorts
                else ((given[b] if given is not None else None) or ZERO_SIZE)
                for b, d in zip(idx.tolist(), dirs.tolist(), strict=True)
            ]
        log.extend_quiet(idx, dirs, self._confidence[k0:k1], closes[idx], reasons)
