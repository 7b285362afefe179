"""A run's candles from the data source it recorded (the backtest's file, or the file a
paper session's replay exchange served), for the price charts.

Files are parsed once per process (an LRU keyed by path and mtime); a big file is
memory-mapped from the bars cache the run itself filled.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atb.dashboards.tables import naive_utc, utc


def source_path(data_source: Any) -> Path | None:
    """The candle file a run read: a backtest records the path, a replay session
    `replay <file>` (`replay bundled`: the bundled file); None for an exchange feed."""
    if not data_source:
        return None
    text = str(data_source)
    if text.startswith("replay "):
        from atb.data.loader import BUNDLED_PATH

        rest = text.removeprefix("replay ").strip()
        return BUNDLED_PATH if rest in ("", "bundled", "None") else Path(rest).expanduser()
    path = Path(text).expanduser()
    return path if path.suffix else None


def candles_for(
    run: dict[str, Any],
    limit: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
) -> pd.DataFrame | None:
    """The run's candles (time, open, high, low, close; time naive UTC) within its data
    range, or [start, end] when given; None when the file is gone. All of them unless
    `limit` (the price chart aggregates them per view)."""
    path = source_path(run.get("data_source"))
    if path is None or not path.is_file():
        return None
    try:
        bars = _load_bars(str(path), path.stat().st_mtime, str(run.get("timeframe") or "1h"))
    except Exception:
        return None
    start = start or utc(run.get("data_start"))
    end = end or utc(run.get("data_end"))
    idx = bars.index
    lo = 0 if start is None else int(idx.searchsorted(pd.Timestamp(start), side="left"))
    hi = len(idx) if end is None else int(idx.searchsorted(pd.Timestamp(end), side="right"))
    df = bars.iloc[lo:hi].reset_index()
    df = df.rename(columns={df.columns[0]: "time"})[["time", "open", "high", "low", "close"]]
    if limit is not None and len(df) > limit:
        df = df.iloc[np.linspace(0, len(df) - 1, limit).astype(int)].reset_index(drop=True)
    return df.assign(time=naive_utc(df["time"]))


@lru_cache(maxsize=4)
def _load_bars(path: str, _mtime: float, timeframe: str) -> pd.DataFrame:
    from atb.data.cache import AUTO_MIN_BYTES, load_cached
    from atb.data.loader import load_bars

    # A 1M-bar file is memory-mapped from the bars cache the run itself filled, rather
    # than parsed again on the page's first paint.
    if Path(path).stat().st_size >= AUTO_MIN_BYTES:
        return load_cached(Path(path), timeframe)[0]
    return load_bars(path, timeframe)
