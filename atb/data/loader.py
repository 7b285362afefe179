"""Load OHLCV candles from CSV and refuse anything a backtest could silently get wrong.

The format is the bundled file's: a header `timestamp,open,high,low,close,volume`, ISO-8601
UTC candle open times, one row per candle. Problems are reported with the file, the 1-based
data row (the header is not a row) and what is wrong, because "bad data" without a row number
sends the user on a hunt. Gaps are *not* errors: real exchanges have outages, and filling them
would invent prices, so they are returned for the caller to report.
"""

from __future__ import annotations

import hashlib
import lzma
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias, cast

import numpy as np
import pandas as pd

BUNDLED_PATH = Path(__file__).resolve().parent / "BTCUSDT-1h.csv.gz"
BUNDLED_SYMBOL = "BTCUSDT"
BUNDLED_TIMEFRAME = "1h"
COLUMNS = ("open", "high", "low", "close", "volume")
Bars: TypeAlias = pd.DataFrame
"""Columns open, high, low, close, volume (float64) on a UTC DatetimeIndex named `time`."""

_UNITS: dict[str, Literal["min", "h", "D", "W"]] = {"m": "min", "h": "h", "d": "D", "w": "W"}


# A corrupt .zip/.xz raises BadZipFile/LZMAError rather than OSError: still name the file.
_READ_ERRORS = (OSError, UnicodeDecodeError, EOFError, zipfile.BadZipFile, lzma.LZMAError)
_TEXT_READ_ERRORS = (*_READ_ERRORS, ValueError)


def _shown(value: object, limit: int = 80) -> str:
    """A cell as quoted in an error: a 5 MB cell is cut, with its length said."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(str(value))} characters)"


class DataError(ValueError):
    """A market-data file that cannot be used; the message names file, row and problem."""

    def __init__(self, path: Path | str, problem: str, row: int | None = None) -> None:
        self.path = str(path)
        self.row = row
        self.problem = problem
        where = f"{self.path}: row {row}: " if row is not None else f"{self.path}: "
        super().__init__(where + problem)


@dataclass(frozen=True)
class Gap:
    """Candles missing between two consecutive bars (`after` and `before` are present)."""

    after: pd.Timestamp
    before: pd.Timestamp
    missing: int


def timeframe_delta(timeframe: str) -> pd.Timedelta | None:
    """`1h` -> 1 hour; months (`1M`) have no fixed length, so they get None (no gap check)."""
    match = re.fullmatch(r"([1-9][0-9]*)([mhdwM])", timeframe)
    if match is None:
        raise ValueError(f"unknown timeframe '{timeframe}'")
    count, unit = int(match.group(1)), match.group(2)
    if unit == "M":
        return None
    return pd.Timedelta(count, unit=_UNITS[unit])


def load_bars(
    path: Path | str | None = None,
    timeframe: str = BUNDLED_TIMEFRAME,
) -> Bars:
    """Read and validate a candle file (None = the bundled BTCUSDT 1h file)."""
    source = BUNDLED_PATH if path is None else Path(path).expanduser()
    if not source.is_file():
        raise DataError(source, "file not found")
    # Fast path: let the C parser read floats and ISO times (3x less CPU than parsing the
    # times afterwards from a column of Python strings). A float cell it cannot parse makes
    # it raise without a row number, so the file is then re-read as text to say exactly
    # where and what; a time it cannot parse leaves the column as text for `_parse`.
    try:
        raw = pd.read_csv(
            source,
            dtype={c: "float64" for c in COLUMNS},
            parse_dates=["timestamp"],
            date_format="ISO8601",
        )
    except ValueError:
        raw = _read_text(source)
    except _READ_ERRORS as exc:
        raise DataError(source, f"cannot read as CSV: {exc}") from exc
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in ("timestamp", *COLUMNS) if c not in raw.columns]
    if missing:
        raise DataError(
            source,
            f"missing column(s) {', '.join(missing)} (header must be "
            "timestamp,open,high,low,close,volume)",
        )
    if raw.empty:
        raise DataError(source, "no rows")
    bars = _parse(source, raw)
    validate_bars(bars, source, timeframe)
    return bars


def _read_text(source: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(source, dtype=str, keep_default_na=False)
    except _TEXT_READ_ERRORS as exc:
        raise DataError(source, f"cannot read as CSV: {exc}") from exc


def _parse(source: Path, raw: pd.DataFrame) -> Bars:
    times = pd.to_datetime(raw["timestamp"], utc=True, errors="coerce", format="ISO8601")
    bad = np.flatnonzero(times.isna().to_numpy())
    if bad.size:
        i = int(bad[0])
        raise DataError(
            source,
            f"timestamp {_shown(raw['timestamp'].iloc[i])} is not an ISO-8601 time",
            row=i + 1,
        )
    data: dict[str, np.ndarray] = {}
    for col in COLUMNS:
        column = raw[col]
        numeric = column if column.dtype == "float64" else pd.to_numeric(column, errors="coerce")
        values = numeric.to_numpy(dtype="float64")
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = int(bad[0])
            shown = column.iloc[i]
            problem = (
                f"{col} is NaN or empty"
                if column.dtype == "float64" or shown in ("", None)
                else f"{col} {_shown(shown)} is not a number"
            )
            raise DataError(source, problem, row=i + 1)
        data[col] = values
    index = pd.DatetimeIndex(times, name="time").as_unit("ns")
    return pd.DataFrame(data, index=index)


def validate_bars(bars: Bars, source: Path | str, timeframe: str) -> None:
    """Strictly increasing times on the timeframe's grid, low <= open/close <= high, no NaN."""
    values = {c: bars[c].to_numpy() for c in COLUMNS}
    for col, arr in values.items():
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise DataError(source, f"{col} is NaN", row=int(bad[0]) + 1)
    stamps = bars.index.asi8  # type: ignore[attr-defined]  # pandas-stubs lacks asi8
    steps = np.diff(stamps)
    bad = np.flatnonzero(steps <= 0)
    if bad.size:
        i = int(bad[0]) + 1
        kind = "duplicates" if steps[i - 1] == 0 else "is earlier than"
        raise DataError(
            source,
            f"timestamp {_iso(bars.index[i])} {kind} the previous row's "
            f"{_iso(bars.index[i - 1])} (timestamps must be strictly increasing)",
            row=i + 1,
        )
    delta = timeframe_delta(timeframe)
    if delta is not None:
        short = np.flatnonzero(steps < delta.value)
        if short.size:
            i = int(short[0]) + 1
            raise DataError(
                source,
                f"timestamp {_iso(bars.index[i])} is only "
                f"{pd.Timedelta(int(steps[i - 1]))} after the previous row "
                f"(timeframe is {timeframe})",
                row=i + 1,
            )
    o, h, low, c, v = (values[k] for k in COLUMNS)
    checks = [
        (low <= 0, "low must be > 0"),
        (h < low, "high < low"),
        ((o < low) | (o > h), "open outside [low, high]"),
        ((c < low) | (c > h), "close outside [low, high]"),
        (v < 0, "volume is negative"),
    ]
    first: tuple[int, str] | None = None
    for mask, problem in checks:
        hits = np.flatnonzero(mask)
        if hits.size and (first is None or hits[0] < first[0]):
            first = (int(hits[0]), problem)
    if first is not None:
        i, problem = first
        raise DataError(
            source,
            f"{problem} (open={o[i]} high={h[i]} low={low[i]} close={c[i]} volume={v[i]})",
            row=i + 1,
        )


def find_gaps(bars: Bars, timeframe: str) -> list[Gap]:
    """Every place where consecutive bars are more than one timeframe apart."""
    delta = timeframe_delta(timeframe)
    if delta is None or len(bars) < 2:
        return []
    steps = np.diff(bars.index.asi8)  # type: ignore[attr-defined]  # pandas-stubs lacks asi8
    gaps = []
    for i in np.flatnonzero(steps > delta.value).tolist():
        missing = int(steps[i] // delta.value) - 1
        gaps.append(Gap(bars.index[i], bars.index[i + 1], max(missing, 1)))
    return gaps


def select_period(bars: Bars, start: pd.Timestamp | None, end: pd.Timestamp | None) -> Bars:
    """Bars with start <= time < end (half-open, so consecutive periods never overlap)."""
    index = bars.index
    lo = 0 if start is None else int(index.searchsorted(start, side="left"))
    hi = len(index) if end is None else int(index.searchsorted(end, side="left"))
    return bars.iloc[lo:hi]


def fingerprint(bars: Bars) -> str:
    """sha256 of exactly the bars used (times + OHLCV), independent of the file's formatting."""
    digest = hashlib.sha256()
    stamps = cast(pd.DatetimeIndex, bars.index).as_unit("ns").asi8  # type: ignore[attr-defined]  # pandas-stubs lacks asi8
    digest.update(np.ascontiguousarray(stamps, dtype="<i8").tobytes())
    for col in COLUMNS:
        digest.update(np.ascontiguousarray(bars[col].to_numpy(), dtype="<f8").tobytes())
    return digest.hexdigest()


def _iso(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")
