"""Large generated candle files for the scale benchmarks (never committed: made on demand).

A geometric random walk in the bundled file's format (header
`timestamp,open,high,low,close,volume`, ISO-8601 UTC open times), vectorised with numpy so
a million rows take a few seconds to make.

"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def random_walk_bars(
    n: int,
    *,
    timeframe_minutes: int = 1,
    start: str = "2021-01-01",
    start_price: float = 30_000.0,
    sigma: float = 0.0008,
    seed: int = 18,
) -> pd.DataFrame:
    """`n` valid candles (low <= open/close <= high, prices rounded to cents)."""
    rng = np.random.default_rng(seed)
    close = np.round(start_price * np.exp(np.cumsum(rng.normal(0.0, sigma, n))), 2)
    open_ = np.empty(n)
    open_[0] = start_price
    open_[1:] = close[:-1]
    top = np.maximum(open_, close)
    bottom = np.minimum(open_, close)
    high = np.round(top * (1 + np.abs(rng.normal(0.0, sigma / 3, n))), 2)
    low = np.round(bottom * (1 - np.abs(rng.normal(0.0, sigma / 3, n))), 2)
    high = np.maximum(high, top)
    low = np.minimum(low, bottom)
    volume = np.round(5 + np.abs(rng.normal(0.0, 1.0, n)) * 20, 5)
    index = pd.date_range(start, periods=n, freq=f"{timeframe_minutes}min", tz="UTC", name="time")
    return pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index
    )


def write_bars_csv(bars: pd.DataFrame, path: Path) -> Path:
    """Write `bars` as the loader reads them (gzip when the name ends in .gz)."""
    out = bars.copy()
    # Vectorised ISO times: Index.strftime formats in Python, ~25 s for a million rows.
    naive = out.index.tz_localize(None) if out.index.tz is not None else out.index
    stamps = np.datetime_as_string(naive.values.astype("M8[s]"), unit="s")
    out.index = pd.Index(np.char.add(stamps, "Z"), name="timestamp")
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, float_format="%.10g")
    return path


def big_csv(n: int, directory: Path, **kwargs: object) -> Path:
    """A cached `n`-bar 1m file under `directory` (made once, reused by later benches)."""
    path = directory / f"walk-{n}-1m.csv"
    if not path.is_file():
        tmp = path.with_suffix(".part")
        write_bars_csv(random_walk_bars(n, **kwargs), tmp)  # type: ignore[arg-type]
        tmp.replace(path)
    return path
