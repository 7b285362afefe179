"""The `data` node: the bars a run trades on, loaded and validated before anything runs."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from pydantic import Field, model_validator

from atb.config.base import NodeConfig, UtcDatetime, field_error
from atb.data.cache import AUTO_MIN_BYTES, load_cached
from atb.data.loader import (
    BUNDLED_PATH,
    BUNDLED_SYMBOL,
    BUNDLED_TIMEFRAME,
    Bars,
    DataError,
    Gap,
    find_gaps,
    fingerprint,
    load_bars,
    select_period,
)
from atb.logging.events import log_data_event
from atb.runtime.context import RunContext
from atb.runtime.node import Node


class MarketDataConfig(NodeConfig):
    path: Path | None = Field(None, description="CSV(.gz) candle file; null = bundled BTCUSDT 1h")
    start: UtcDatetime | None = Field(None, description="first bar time, inclusive (UTC)")
    end: UtcDatetime | None = Field(None, description="end time, exclusive (UTC)")
    symbol: str = Field(BUNDLED_SYMBOL, min_length=1, description="what the file holds")
    timeframe: str = Field(BUNDLED_TIMEFRAME, pattern=r"^[1-9][0-9]*[mhdwM]$")
    cache: Literal["auto"] | bool = Field(
        "auto",
        description="keep a parsed columnar copy (sweep jobs share it); auto: files >= 8 MB",
    )
    cache_dir: Path | None = Field(None, description="null = $ATB_CACHE_DIR or ~/.cache/atb/bars")

    @model_validator(mode="after")
    def _check(self) -> MarketDataConfig:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise field_error("end", "must be after data.start")
        if self.path is None and self.symbol != BUNDLED_SYMBOL:
            raise field_error(
                "symbol",
                f"the bundled data is {BUNDLED_SYMBOL} only; use data=csv data.path=<file>",
            )
        if self.path is None and self.timeframe != BUNDLED_TIMEFRAME:
            raise field_error(
                "timeframe",
                f"the bundled data is {BUNDLED_TIMEFRAME} only; use data=csv data.path=<file>",
            )
        return self


class MarketData(Node[MarketDataConfig]):
    """Loads, validates and selects the bars on start; reports gaps as `data_gap` events.

    After start: `bars` (the selected period), `fingerprint` (sha256 of those bars),
    `gaps`, `source` (the file read).
    """

    def __init__(self, config: NodeConfig, ctx: RunContext, **needs: Any) -> None:
        super().__init__(config, ctx)
        self.source: Path = self.config.path or BUNDLED_PATH
        self.symbol = self.config.symbol
        self.timeframe = self.config.timeframe
        self._bars: Bars | None = None
        self.fingerprint = ""
        self.gaps: list[Gap] = []

    @property
    def bars(self) -> Bars:
        if self._bars is None:
            raise RuntimeError("market data is not loaded: the data node has not started")
        return self._bars

    def start(self) -> None:
        self.load()

    def load(self) -> Bars:
        cfg = self.config
        loaded, digest = self._read()
        bars = select_period(loaded, _ts(cfg.start), _ts(cfg.end))
        if bars.empty:
            raise DataError(self.source, f"no bars in the selected period [{cfg.start}, {cfg.end})")
        self._bars = bars
        # The whole file's fingerprint is kept with the cached copy; a period needs its own.
        self.fingerprint = (
            digest if digest is not None and len(bars) == len(loaded) else (fingerprint(bars))
        )
        self.gaps = find_gaps(bars, cfg.timeframe)
        for gap in self.gaps:
            log_data_event(
                "data_gap",
                level="WARNING",
                symbol=self.symbol,
                timeframe=self.timeframe,
                after=gap.after.isoformat(),
                before=gap.before.isoformat(),
                missing_bars=gap.missing,
                file=str(self.source),
            )
        log_data_event(
            "data_loaded",
            symbol=self.symbol,
            timeframe=self.timeframe,
            bars=len(bars),
            first=bars.index[0].isoformat(),
            last=bars.index[-1].isoformat(),
            gaps=len(self.gaps),
            fingerprint=self.fingerprint,
            file=str(self.source),
        )
        return bars

    def _read(self) -> tuple[Bars, str | None]:
        cfg = self.config
        cached = cached_file(cfg)
        if cached is not None:
            return load_cached(cached, cfg.timeframe, cfg.cache_dir)
        return load_bars(cfg.path, cfg.timeframe), None


def cached_file(cfg: MarketDataConfig) -> Path | None:
    """The file this data section reads through the bars cache; None when it parses
    directly (the bundled file, no such file, caching off or the file below `auto`'s size).
    The sweep launcher's prefetch asks the same question (runtime/bars_prefetch.py)."""
    source = cfg.path
    if source is None or not source.is_file():
        return None
    use = cfg.cache
    if use == "auto":
        use = source.stat().st_size >= AUTO_MIN_BYTES
    return source.expanduser() if use else None


def _ts(value: datetime | None) -> pd.Timestamp | None:
    return None if value is None else pd.Timestamp(value)
