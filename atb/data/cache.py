"""A parsed, validated columnar copy of a big candle file, shared by every run that reads it.

Parsing a 1M-row CSV costs seconds; an 8-job sweep would pay it eight times. The first run
to read a file writes its bars as one `.npy` per column plus the data fingerprint; later
runs (other sweep jobs, worker processes, tomorrow's backtest) memory-map those arrays, so
the operating system shares the pages between processes and nothing is parsed again.

The key is what the file *is* on disk (resolved path, size, mtime in ns) plus the timeframe
its rows were validated against; a file that changes gets a new key. Entries are written
to a temporary directory and renamed into place, so a crashed writer or two jobs racing
never leave a half-written entry that a reader would trust.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from atb.data.loader import COLUMNS, Bars, fingerprint, load_bars

FORMAT = 1
AUTO_MIN_BYTES = 8 * 1024 * 1024
"""`cache: auto` caches files at least this big (the bundled 1h file parses in ~20 ms)."""


def default_cache_dir() -> Path:
    env = os.environ.get("ATB_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "atb" / "bars"


def _key(source: Path, timeframe: str) -> str:
    stat = source.stat()
    ident = f"{FORMAT}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{timeframe}"
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def load_cached(source: Path, timeframe: str, cache_dir: Path | None = None) -> tuple[Bars, str]:
    """(bars, fingerprint) of `source`, from the cache when it holds them, else parsed
    with the loader's full validation and then stored for the next reader."""
    root = cache_dir or default_cache_dir()
    entry = root / _key(source, timeframe)
    hit = _read(entry)
    if hit is not None:
        return hit
    # Sweep jobs starting together would all parse the file: the first takes the entry's
    # lock and parses, the others wait for it and then map its copy.
    with _entry_lock(entry):
        hit = _read(entry)
        if hit is not None:
            return hit
        bars = load_bars(source, timeframe)
        digest = fingerprint(bars)
        # A cache that cannot be written (read-only home, full disk) only costs speed.
        with contextlib.suppress(OSError):
            _write(entry, bars, digest, source)
    return bars, digest


@contextlib.contextmanager
def _entry_lock(entry: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # not POSIX: concurrent jobs may each parse once
        yield
        return
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        handle = (entry.parent / f".{entry.name}.lock").open("a")
    except OSError:
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read(entry: Path) -> tuple[Bars, str] | None:
    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        n = int(meta["rows"])
        stamps = np.load(entry / "time.npy", mmap_mode="r")
        # "c": a private mapping, so a run that writes to its bars changes its own pages
        # and never the cached file, while unchanged pages stay shared between processes.
        columns = {c: np.load(entry / f"{c}.npy", mmap_mode="c") for c in COLUMNS}
        if len(stamps) != n or any(len(v) != n for v in columns.values()):
            return None
        index = pd.DatetimeIndex(np.asarray(stamps).view("M8[ns]"), name="time").tz_localize("UTC")
        # copy=False keeps one block per mapped column: no 40 MB copy per 1M-bar job, and
        # the pages stay shared between sweep workers.
        return pd.DataFrame(columns, index=index, copy=False), str(meta["fingerprint"])
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None


def _write(entry: Path, bars: Bars, digest: str, source: Path) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        stamps = pd.DatetimeIndex(bars.index).as_unit("ns").asi8  # type: ignore[attr-defined]  # pandas-stubs lacks asi8
        np.save(tmp / "time.npy", stamps)
        for col in COLUMNS:
            np.save(tmp / f"{col}.npy", bars[col].to_numpy(dtype="float64"))
        meta = {"rows": len(bars), "fingerprint": digest, "source": str(source), "format": FORMAT}
        (tmp / "meta.json").write_text(json.dumps(meta))
        try:
            tmp.rename(entry)
        except OSError:
            if not (entry / "meta.json").is_file():  # another job won the race: fine
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
