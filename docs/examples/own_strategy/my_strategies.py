"""A strategy that lives outside atb: `python -m atb --config-dir myconf strategy=momentum`.

Run from this directory (or put it on PYTHONPATH); tests/deploy/test_user_config.py runs it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import Field

from atb.strategies.base import BUY, SELL, SignalFrame, Strategy, StrategyConfig


class MomentumConfig(StrategyConfig):
    name: str = "momentum"
    lookback: int = Field(24, ge=1, description="bars back to compare the close with")


class Momentum(Strategy[MomentumConfig]):
    """BUY when the close rises above the close `lookback` bars ago, SELL when it falls below."""

    @property
    def warmup(self) -> int:
        return self.config.lookback + 1

    def signals(self, bars: pd.DataFrame) -> SignalFrame:
        close = bars["close"].to_numpy()
        n = len(close)
        above = np.zeros(n, dtype=bool)
        k = self.config.lookback
        above[k:] = close[k:] > close[:-k]
        direction = np.zeros(n, dtype=np.int8)
        direction[1:][above[1:] & ~above[:-1]] = BUY
        direction[1:][~above[1:] & above[:-1]] = SELL
        direction[: k + 1] = 0
        return SignalFrame(direction=direction, size=np.ones(n))
