"""`sma_crossover`: buy when the fast SMA crosses above the slow one, sell when it crosses below.

Signals are events, not states: only the crossing bar carries BUY/SELL, every other bar is
HOLD. That keeps the engine's work proportional to the number of crossings, and it is the
textbook rule (backtesting.py's `crossover`: strictly below on the previous bar, strictly
above on this one), which the benchmark checks trade for trade.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from atb.config.base import field_error
from atb.strategies.base import BUY, SELL, SignalFrame, Strategy, StrategyConfig


class SmaCrossoverConfig(StrategyConfig):
    name: str = "sma_crossover"
    fast: int = Field(10, ge=1, description="fast SMA length in bars")
    slow: int = Field(50, ge=2, description="slow SMA length in bars")
    size: float = Field(1.0, gt=0, le=1, description="fraction of balance asked for per entry")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> SmaCrossoverConfig:
        if self.fast >= self.slow:
            raise field_error("fast", "must be < strategy.slow")
        return self


class SmaCrossover(Strategy[SmaCrossoverConfig]):
    @property
    def warmup(self) -> int:
        return self.config.slow

    def indicators(self, bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        # pandas' rolling mean (not a cumsum trick) so near-ties round exactly like every
        # other pandas-based tool: a crossover decided by the 12th digit must agree.
        close = bars["close"]
        fast = close.rolling(self.config.fast).mean().to_numpy()
        slow = close.rolling(self.config.slow).mean().to_numpy()
        return fast, slow

    def signals(self, bars: pd.DataFrame) -> SignalFrame:
        fast, slow = self.indicators(bars)
        n = len(bars)
        direction = np.zeros(n, dtype=np.int8)
        if n > 1:
            # NaN compares False, so the warm-up bars are HOLD without a special case.
            up = (fast[:-1] < slow[:-1]) & (fast[1:] > slow[1:])
            down = (fast[:-1] > slow[:-1]) & (fast[1:] < slow[1:])
            direction[1:][up] = BUY
            direction[1:][down] = SELL
        size = np.full(n, self.config.size)
        sl = self.config.stop_loss
        tp = self.config.take_profit
        return SignalFrame(
            direction=direction,
            size=size,
            stop_loss=None if sl is None else np.full(n, sl),
            take_profit=None if tp is None else np.full(n, tp),
        )
