"""The fill model: at what price and cost an order executes against a bar.

- Market orders fill at the bar's open.
- Stop-loss / take-profit are checked against the bar's low/high. When one bar touches
  both, we cannot know which came first from OHLC, so the stop-loss wins (worst case).
  A bar that opens beyond a level fills at the open, not at the level: gaps hurt.
- Every fill is `slippage` worse than its reference price (buys higher, sells lower) and
  pays `fee` on its notional. This is deliberately conservative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

ExitReason = Literal["stop_loss", "take_profit"]
F = TypeVar("F", float, np.ndarray)


@dataclass(frozen=True, slots=True)
class FillModel:
    fee: float = 0.001
    slippage: float = 0.0005

    def price(self, reference: float, side: int) -> float:
        """Execution price of a `side` (+1 buy / -1 sell) fill at `reference`."""
        return reference * (1.0 + self.slippage * side)

    def cost(self, qty: float, price: float) -> float:
        return abs(qty) * price * self.fee

    def stop_exit(
        self,
        side: int,
        stop_price: float | None,
        take_price: float | None,
        bar_open: float,
        bar_high: float,
        bar_low: float,
    ) -> tuple[float, ExitReason] | None:
        """Reference price and reason if a position on `side` is stopped out on this bar."""
        hit_sl, hit_tp = touched(side, stop_price, take_price, bar_high, bar_low)
        if hit_sl and stop_price is not None:  # worst case first
            ref = min(stop_price, bar_open) if side > 0 else max(stop_price, bar_open)
            return ref, "stop_loss"
        if hit_tp and take_price is not None:
            ref = max(take_price, bar_open) if side > 0 else min(take_price, bar_open)
            return ref, "take_profit"
        return None


def touched(
    side: int, stop_price: float | None, take_price: float | None, high: F, low: F
) -> tuple[F | bool, F | bool]:
    """(stop touched, take touched) for scalars or whole arrays of bars.

    The one definition of "touched": the per-bar check uses it on one bar, the backtest
    driver on a slice to find the next bar worth stepping to.
    """
    if side > 0:
        hit_sl = low <= stop_price if stop_price is not None else False
        hit_tp = high >= take_price if take_price is not None else False
    else:
        hit_sl = high >= stop_price if stop_price is not None else False
        hit_tp = low <= take_price if take_price is not None else False
    return hit_sl, hit_tp
