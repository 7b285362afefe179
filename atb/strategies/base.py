"""The strategy contract shared by every mode.

A strategy computes signals for many bars at once (`signals`), which is what makes
backtests fast; the live loop calls the same method on the trailing window and acts on
the last row, so there is one decision path, not a fast copy and a slow copy.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from pydantic import Field

from atb.config.base import NodeConfig
from atb.runtime.context import RunContext
from atb.runtime.node import Node

BUY = 1
SELL = -1
HOLD = 0


class StrategyConfig(NodeConfig):
    name: str = Field(min_length=1)
    stop_loss: float | None = Field(None, gt=0, lt=1, description="fraction below/above entry")
    take_profit: float | None = Field(None, gt=0, description="fraction beyond entry")


@dataclass
class SignalFrame:
    """Per-bar output of a strategy, aligned with the bars it was computed on.

    direction[i] is decided on bar i's close (BUY / SELL / HOLD); size[i] is the fraction
    of balance the strategy asks for when acting (0 means "signal, but do not trade",
    with reason[i] saying why). The engine's risk layer caps it; it never grows it.
    """

    direction: np.ndarray  # int8
    size: np.ndarray  # float64, fraction of balance
    stop_loss: np.ndarray | None = None  # float64 fraction, NaN = none
    take_profit: np.ndarray | None = None
    confidence: np.ndarray | None = None
    reason: list[str | None] | None = None
    predictions: pd.DataFrame | None = None
    """Optional per-bar model output (time, predicted_price, r, confidence, direction, model_id)."""

    def __len__(self) -> int:
        return len(self.direction)

    def row(self, i: int) -> dict[str, Any]:
        def at(arr: np.ndarray | None) -> float | None:
            if arr is None:
                return None
            v = float(arr[i])
            return None if np.isnan(v) else v

        return {
            "direction": int(self.direction[i]),
            "size": float(self.size[i]),
            "stop_loss": at(self.stop_loss),
            "take_profit": at(self.take_profit),
            "confidence": at(self.confidence),
            "reason": self.reason[i] if self.reason is not None else None,
        }


S = TypeVar("S", bound=StrategyConfig)


class Strategy(Node[S], ABC):
    def __init__(self, config: NodeConfig, ctx: RunContext, **needs: Any) -> None:
        super().__init__(config, ctx)
        self.name = self.config.name

    @property
    def warmup(self) -> int:
        """Bars needed before the first signal can be trusted."""
        return 0

    @abstractmethod
    def signals(self, bars: pd.DataFrame) -> SignalFrame:
        """Signals for every row of `bars` (columns open, high, low, close, volume;
        a UTC DatetimeIndex). Rows inside the warm-up get HOLD."""

    def summary_rows(self) -> list[tuple[str, str]]:
        """(label, value) lines the strategy adds to a run's printed summary."""
        return []

    def parameters(self) -> dict[str, Any]:
        """What identifies this strategy's settings in run records and sweeps."""
        return self.config.model_dump(exclude={"target", "needs", "enabled"})
