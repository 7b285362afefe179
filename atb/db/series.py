"""Compact per-bar series: one compressed blob per column in `run_series`.

A backtest's per-bar columns (equity, drawdown, predictions, decisions, ...) are what the dashboards
plot, but a row per bar made a 1M-bar run 200+ MB and took longer to write than to run.
Each column is instead stored whole:

- floats (`f8`): byte-shuffled (all first bytes, then all second bytes, ...) then zlib.
  Account series are flat between trades and prices share sign/exponent bytes, so the
  shuffled planes compress far better than the raw doubles. Exact: NaN and every bit of
  every value survive.
- times (`t8`): int64 nanoseconds, delta-encoded, then shuffled + zlib: a regular 1m grid
  becomes a run of identical deltas (a few hundred bytes for a million bars).
- text (`json`): a JSON list, zlib (model ids repeat on every bar).

Readers get the columns back as one pandas frame (`read_series`), or `None` when the run
has no compact series (live/paper runs and runs recorded before migration 0005 keep rows).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Table, insert, select

from atb.db.models.run_records import RunSeries

run_series: Table = RunSeries.__table__  # type: ignore[assignment]

ACCOUNT = "account"
DECISIONS = "decisions"
PREDICTIONS = "predictions"
LEVEL = 1
"""zlib level: level 1 is within a few percent of level 6 on these planes at 3-4x the speed."""


def _shuffle(raw: np.ndarray) -> bytes:
    return np.ascontiguousarray(raw.view(np.uint8).reshape(-1, 8).T).tobytes()


def _unshuffle(data: bytes, n: int) -> np.ndarray:
    planes = np.frombuffer(data, dtype=np.uint8).reshape(8, n)
    return np.ascontiguousarray(planes.T).reshape(-1)


def encode(values: Any) -> tuple[str, int, bytes]:
    """(codec, length, blob) for one column: a DatetimeIndex, numbers, or text/None."""
    if isinstance(values, pd.DatetimeIndex):
        utc = values.tz_convert("UTC") if values.tz is not None else values
        ns = utc.as_unit("ns").asi8  # type: ignore[attr-defined]  # pandas-stubs lacks asi8
        stamps = np.ascontiguousarray(ns, dtype="<i8")
        deltas = np.empty_like(stamps)
        if len(stamps):
            deltas[0] = stamps[0]
            np.subtract(stamps[1:], stamps[:-1], out=deltas[1:])
        return "t8", len(stamps), zlib.compress(_shuffle(deltas), LEVEL)
    array = np.asarray(values)
    if array.dtype.kind in "biuf":
        floats = np.ascontiguousarray(array, dtype="<f8")
        return "f8", len(floats), zlib.compress(_shuffle(floats), LEVEL)
    items = [None if v is None else str(v) for v in array.tolist()]
    return "json", len(items), zlib.compress(json.dumps(items).encode(), LEVEL)


def decode(codec: str, length: int, blob: bytes) -> Any:
    """The inverse of `encode`: a tz-aware UTC DatetimeIndex, a float64 array or a list."""
    if codec not in ("t8", "f8", "json"):
        raise ValueError(f"unknown series codec {codec!r}")
    data = zlib.decompress(bytes(blob))
    if codec == "t8":
        stamps = np.cumsum(_unshuffle(data, length).view("<i8"))
        return pd.DatetimeIndex(stamps.astype("M8[ns]")).tz_localize("UTC")
    if codec == "f8":
        return _unshuffle(data, length).view("<f8").astype(float, copy=False)
    return json.loads(data)


def series_rows(
    run_id: str, mode: str, series: str, columns: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The `run_series` rows of one series (all columns the same length), compressed."""
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"series {series!r}: columns differ in length {sorted(lengths)}")
    # zlib releases the GIL: the columns compress in parallel (1M-bar account: ~2x faster).
    with ThreadPoolExecutor(max_workers=min(4, max(len(columns), 1))) as pool:
        encoded = list(pool.map(encode, columns.values()))
    rows = []
    for name, (codec, length, blob) in zip(columns, encoded, strict=True):
        rows.append(
            {
                "run_id": run_id,
                "mode": mode,
                "series": series,
                "column": name,
                "length": length,
                "codec": codec,
                "data": blob,
            }
        )
    return rows


def write_series(
    session: Any, run_id: str, mode: str, series: str, columns: Mapping[str, Any]
) -> None:
    """Insert one series in the caller's transaction."""
    insert_series_rows(session, series_rows(run_id, mode, series, columns))


def insert_series_rows(session: Any, rows: list[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(run_series), rows)


def has_series(conn: Connection, run_id: str, series: str) -> bool:
    query = (
        select(run_series.c.id)
        .where(run_series.c.run_id == run_id, run_series.c.series == series)
        .limit(1)
    )
    return conn.execute(query).first() is not None


def read_series(
    conn: Connection,
    run_id: str,
    series: str,
    columns: Iterable[str] | None = None,
    mode: str | None = None,
) -> pd.DataFrame | None:
    """The run's stored series as a frame (`time` a column, tz-aware UTC), or None.

    `columns` limits what is read and decompressed; `mode` guards against reading another
    mode's run like every other child query does.
    """
    query = select(
        run_series.c.column, run_series.c.length, run_series.c.codec, run_series.c.data
    ).where(run_series.c.run_id == run_id, run_series.c.series == series)
    if mode is not None:
        query = query.where(run_series.c.mode == mode)
    wanted = None if columns is None else list(dict.fromkeys(["time", *columns]))
    if wanted is not None:
        query = query.where(run_series.c.column.in_(wanted))
    rows = conn.execute(query).all()
    if not rows:
        return None
    data = {name: decode(codec, length, blob) for name, length, codec, blob in rows}
    order = wanted if wanted is not None else ["time", *sorted(k for k in data if k != "time")]
    # Text stays object dtype: None for a missing value, as the row tables give it.
    return pd.DataFrame(
        {
            k: pd.Series(data[k], dtype=object) if isinstance(data[k], list) else data[k]
            for k in order
            if k in data
        }
    )
