"""Shared helpers for the ml tests (imported by name: tests have no packages)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

L = 120
F = 5

WriteModel = Callable[..., Path]


def constant_layers(value: float, sequence_length: int = L) -> list[tuple[np.ndarray, np.ndarray]]:
    """A model that predicts `value` (normalised) for every window."""
    return [(np.zeros((sequence_length * F, 1)), np.array([value]))]


def synthetic_bars(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.005, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.005, n))
    volume = rng.uniform(10, 100, n)
    index = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC", name="time")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )
