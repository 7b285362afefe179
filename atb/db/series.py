"""Compact per-bar series: one compressed blob per column in `run_series`.

A backtest's per-bar columns (equity, drawdown, predictions, decisions, ...) are what the dashboards
plot, but a row per bar made a 1M-bar run 200+ MB and took longer to write than to run.
Each column is instead stored whole:

- floats (`f8p`): byte-shuffled (all first bytes, then all second bytes, ...), each of
  the 8 planes zlib-compressed on its own or, when a sample shows it will not shrink
  (the low mantissa bytes of prices and equity are noise), stored as is. Account series
  are flat between trades and prices share sign/exponent bytes, so the high planes
  compress to almost nothing; skipping the noise planes makes a 1M-bar column ~10x
  cheaper to write than zlib over all of it (`f8`, what older runs hold; both decode).
  Exact: NaN and every bit of every value survive.
- times (`t8`): int64 nanoseconds, delta-encoded, then shuffled + zlib: a regular 1m grid
  becomes a run of identical deltas (a few hundred bytes for a million bars).
- text (`cat`): the distinct values as a JSON list, then an int32 code per row (-1 for
  None), shuffled + zlib. Model ids, actions and reasons repeat on nearly every bar, and
  a JSON list of a million strings took ~0.8 s per column to write. `json` (a JSON list,
  zlib) is what runs recorded before this codec hold; both decode.

Readers get the columns back as one pandas frame (`read_series`), or `None` when the run
has no compact series (live/paper runs and runs recorded before migration 0005 keep rows).
"""

from __future__ import annotations

import json
import threading
import zlib
from collections import OrderedDict
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


_SAMPLE = 65_536
_RAW, _ZLIB = b"\x00", b"\x01"


def _pack_planes(floats: np.ndarray) -> bytes:
    """The 8 byte planes of float64 values, each compressed or raw (flag + length + data)."""
    planes = np.ascontiguousarray(floats.view(np.uint8).reshape(-1, 8).T)
    parts = []
    for plane in planes:
        data = plane.tobytes()
        sample = data[:_SAMPLE]
        if sample and len(zlib.compress(sample, LEVEL)) > 0.9 * len(sample):
            flag = _RAW
        else:
            flag, data = _ZLIB, zlib.compress(data, LEVEL)
        parts += [flag, len(data).to_bytes(8, "little"), data]
    return b"".join(parts)


def _unpack_planes(blob: bytes, n: int) -> np.ndarray:
    planes = np.empty((8, n), dtype=np.uint8)
    at = 0
    for k in range(8):
        flag, size = blob[at : at + 1], int.from_bytes(blob[at + 1 : at + 9], "little")
        data = blob[at + 9 : at + 9 + size]
        planes[k] = np.frombuffer(zlib.decompress(data) if flag == _ZLIB else data, np.uint8)
        at += 9 + size
    return np.ascontiguousarray(planes.T).reshape(-1).view("<f8")


def encode(values: Any) -> tuple[str, int, bytes]:
    """(codec, length, blob) for one column: a DatetimeIndex, numbers, or text/None."""
    if isinstance(values, pd.DatetimeIndex):
        utc = values.tz_convert("UTC") if values.tz is not None else values
        stamps = np.ascontiguousarray(utc.as_unit("ns").asi8, dtype="<i8")  # type: ignore[attr-defined,unused-ignore]
        deltas = np.empty_like(stamps)
        if len(stamps):
            deltas[0] = stamps[0]
            np.subtract(stamps[1:], stamps[:-1], out=deltas[1:])
        return "t8", len(stamps), zlib.compress(_shuffle(deltas), LEVEL)
    array = np.asarray(values, dtype=object) if isinstance(values, list) else np.asarray(values)
    if array.dtype == object:
        # A list of Python numbers is a number column; anything with text (or only None)
        # is text. Inferring on the object array is C speed, unlike np.asarray's own
        # guess, which builds a fixed-width unicode copy of a million strings first.
        kind = pd.api.types.infer_dtype(array, skipna=True)
        numeric = kind in ("floating", "integer", "mixed-integer-float", "boolean")
        if numeric or not len(array):
            array = array.astype(float)
    if array.dtype.kind in "biuf":
        floats = np.ascontiguousarray(array, dtype="<f8")
        return "f8p", len(floats), _pack_planes(floats)
    return _encode_text(array)


def _encode_text(values: np.ndarray) -> tuple[str, int, bytes]:
    items = values.astype(object, copy=False)
    try:
        codes, uniques = pd.factorize(items, use_na_sentinel=True)
    except TypeError:  # unhashable objects (a dict as a reason): stored as their text
        text = np.array([None if v is None else str(v) for v in items.tolist()], dtype=object)
        codes, uniques = pd.factorize(text, use_na_sentinel=True)
    header = json.dumps([str(v) for v in uniques.tolist()]).encode()
    planes = np.ascontiguousarray(
        codes.astype("<i4", copy=False).view(np.uint8).reshape(-1, 4).T
    ).tobytes()
    blob = len(header).to_bytes(4, "little") + header + planes
    return "cat", len(codes), zlib.compress(blob, LEVEL)


def _decode_text(data: bytes, length: int) -> list[Any]:
    size = int.from_bytes(data[:4], "little")
    uniques = np.array([*json.loads(data[4 : 4 + size]), None], dtype=object)
    planes = np.frombuffer(data, dtype=np.uint8, offset=4 + size).reshape(4, length)
    codes = np.ascontiguousarray(planes.T).reshape(-1).view("<i4")
    return uniques[codes].tolist()  # type: ignore[no-any-return,unused-ignore]  # -1: None


def decode(codec: str, length: int, blob: bytes) -> Any:
    """The inverse of `encode`: a tz-aware UTC DatetimeIndex, a float64 array or a list."""
    if codec not in ("t8", "f8p", "f8", "cat", "json"):
        raise ValueError(f"unknown series codec {codec!r}")
    if codec == "f8p":
        return _unpack_planes(bytes(blob), length).astype(float, copy=False)
    data = zlib.decompress(bytes(blob))
    if codec == "t8":
        stamps = np.cumsum(_unshuffle(data, length).view("<i8"))
        return pd.DatetimeIndex(stamps.astype("M8[ns]")).tz_localize("UTC")
    if codec == "f8":
        return _unshuffle(data, length).view("<f8").astype(float, copy=False)
    if codec == "cat":
        return _decode_text(data, length)
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


_DECODED: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_DECODED_LOCK = threading.Lock()
DECODED_CACHE = 12
"""Decoded columns kept per process (~8 MB each at 1M bars). A run's series are written
once and never updated, so a dashboard re-reading a run's curve skips the decompression."""


def _decoded(key: tuple[Any, ...], load: Any) -> Any:
    with _DECODED_LOCK:
        if key in _DECODED:
            _DECODED.move_to_end(key)
            return _DECODED[key]
    value = load()
    with _DECODED_LOCK:
        _DECODED[key] = value
        while len(_DECODED) > DECODED_CACHE:
            _DECODED.popitem(last=False)
    return value


def read_series(
    conn: Connection,
    run_id: str,
    series: str,
    columns: Iterable[str] | None = None,
    mode: str | None = None,
    tail: int | None = None,
) -> pd.DataFrame | None:
    """The run's stored series as a frame (`time` a column, tz-aware UTC), or None.

    `columns` limits what is read and decompressed; `mode` guards against reading another
    mode's run like every other child query does; `tail` keeps only the last rows (cut
    before the frame is built).
    """
    where = [run_series.c.run_id == run_id, run_series.c.series == series]
    if mode is not None:
        where.append(run_series.c.mode == mode)
    wanted = None if columns is None else list(dict.fromkeys(["time", *columns]))
    if wanted is not None:
        where.append(run_series.c.column.in_(wanted))
    listing = conn.execute(
        select(run_series.c.id, run_series.c.column, run_series.c.length, run_series.c.codec)
        .where(*where)
    ).all()  # fmt: skip
    if not listing:
        return None
    url = str(conn.engine.url)

    def fetch(row_id: int, codec: str, length: int) -> Any:
        blob = conn.execute(select(run_series.c.data).where(run_series.c.id == row_id)).scalar()
        if blob is None:  # deleted between the listing and this read
            raise LookupError(f"run {run_id}: series {series!r} vanished while read")
        return decode(codec, length, blob)

    data = {
        name: _decoded(
            (url, run_id, series, name, row_id, length, codec),
            lambda row_id=row_id, codec=codec, length=length: fetch(row_id, codec, length),
        )
        for row_id, name, length, codec in listing
    }
    order = wanted if wanted is not None else ["time", *sorted(k for k in data if k != "time")]
    start = 0 if tail is None else max(len(data[order[0]]) - tail, 0)
    # Text stays object dtype: None for a missing value, as the row tables give it.
    return pd.DataFrame(
        {
            k: pd.Series(data[k][start:], dtype=object)
            if isinstance(data[k], list)
            else data[k][start:]
            for k in order
            if k in data
        }
    )
