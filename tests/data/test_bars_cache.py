"""The columnar bars cache: a big file is parsed once, then memory-mapped by every run."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from atb_testkit.bigdata import random_walk_bars, write_bars_csv

from atb.data import cache as bars_cache
from atb.data.loader import DataError, fingerprint, load_bars
from atb.data.node import MarketData, MarketDataConfig
from atb.runtime.context import RunContext


def _node(path: Path, cache_dir: Path, **kw: object) -> MarketData:
    config = MarketDataConfig.model_validate(
        {
            "_target_": "atb.data.node.MarketData",
            "path": str(path),
            "timeframe": "1m",
            "cache": True,
            "cache_dir": str(cache_dir),
            **kw,
        }
    )
    return MarketData(config, RunContext())


def _entries(cache_dir: Path) -> list[Path]:
    return [p for p in cache_dir.iterdir() if not p.name.startswith(".")]  # not lock files


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    return write_bars_csv(random_walk_bars(5000), tmp_path / "walk.csv")


def test_second_run_reads_the_cached_copy_without_parsing(
    csv_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _node(csv_file, tmp_path / "cache")
    first.load()
    assert len(_entries(tmp_path / "cache")) == 1

    def no_parse(*_a: object, **_k: object) -> None:
        raise AssertionError("the file was parsed again")

    monkeypatch.setattr(bars_cache, "load_bars", no_parse)
    second = _node(csv_file, tmp_path / "cache")
    second.load()
    assert second.bars.equals(first.bars) and second.fingerprint == first.fingerprint
    assert second.fingerprint == fingerprint(load_bars(csv_file, "1m"))
    assert str(second.bars.index.tz) == "UTC"


def test_a_period_gets_its_own_fingerprint(csv_file: Path, tmp_path: Path) -> None:
    whole = _node(csv_file, tmp_path / "cache")
    whole.load()
    part = _node(csv_file, tmp_path / "cache", start="2021-01-01T10:00:00Z")
    part.load()
    assert len(part.bars) == 5000 - 600 and part.fingerprint == fingerprint(part.bars)
    assert part.fingerprint != whole.fingerprint


def test_a_changed_file_is_parsed_and_validated_again(csv_file: Path, tmp_path: Path) -> None:
    _node(csv_file, tmp_path / "cache").load()
    lines = csv_file.read_text().splitlines()
    lines[3] = lines[3].replace("Z,", "Z,-", 1)  # negative open
    csv_file.write_text("\n".join(lines) + "\n")
    os.utime(csv_file, ns=(1, 1))
    with pytest.raises(DataError, match="row 3"):
        _node(csv_file, tmp_path / "cache").load()


def test_a_damaged_entry_is_ignored(csv_file: Path, tmp_path: Path) -> None:
    node = _node(csv_file, tmp_path / "cache")
    node.load()
    (entry,) = _entries(tmp_path / "cache")
    (entry / "close.npy").write_bytes(b"garbage")
    again = _node(csv_file, tmp_path / "cache")
    again.load()
    np.testing.assert_array_equal(again.bars["close"], node.bars["close"])


def test_auto_leaves_small_files_alone(csv_file: Path, tmp_path: Path) -> None:
    _node(csv_file, tmp_path / "cache", cache="auto").load()
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow  # two spawned interpreters
def test_concurrent_jobs_parse_the_file_once(csv_file: Path, tmp_path: Path) -> None:
    """Two sweep workers starting together: one parses, the other maps its copy."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        results = pool.starmap(_load_in_worker, [(csv_file, tmp_path / "cache")] * 2)
    assert sorted(parsed for parsed, _ in results) == [False, True]
    assert results[0][1] == results[1][1]


def _load_in_worker(path: Path, cache_dir: Path) -> tuple[bool, str]:
    parsed = []
    original = bars_cache.load_bars

    def counting(*args: object, **kwargs: object) -> object:
        parsed.append(1)
        time.sleep(0.5)  # a slow parse: the other worker arrives while it runs
        return original(*args, **kwargs)  # type: ignore[arg-type]

    bars_cache.load_bars = counting  # type: ignore[assignment]
    _bars, digest = bars_cache.load_cached(path, "1m", cache_dir)
    return bool(parsed), digest


def test_a_cached_read_maps_the_columns_without_copying(csv_file: Path, tmp_path: Path) -> None:
    """Sweep jobs share the mapped pages; a job that changes its bars gets its own copy."""
    _node(csv_file, tmp_path / "cache").load()
    node = _node(csv_file, tmp_path / "cache")
    bars = node.load()
    close = bars["close"].to_numpy()
    base = close
    while base is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap), "the column is a copy, not the mapped file"
    before = float(close[0])
    bars.loc[bars.index[0], "close"] = -1.0  # a private mapping: the cached file is untouched
    again = _node(csv_file, tmp_path / "cache").load()
    assert float(again["close"].iloc[0]) == before
