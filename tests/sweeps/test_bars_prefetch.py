"""The sweep launcher parses its candle file into the cache while it starts up."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from atb_testkit.bigdata import random_walk_bars, write_bars_csv
from omegaconf import DictConfig, OmegaConf

from atb.data import cache as bars_cache
from atb.data.loader import DataError
from atb.runtime import bars_prefetch
from atb.runtime.bars_prefetch import prefetch_bars
from atb.runtime.tuning import fork_available

pytestmark = pytest.mark.skipif(not fork_available(), reason="the prefetch forks")


@pytest.fixture(autouse=True)
def one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A sweep launcher runs one thread when it forks; this test process may hold other
    tests' threads (the guard for them is tested on its own below)."""
    monkeypatch.setattr(bars_prefetch.threading, "active_count", lambda: 1)


def test_no_fork_while_other_threads_run(csv_file: Path, tmp_path: Path) -> None:
    import threading

    done = threading.Event()
    other = threading.Thread(target=done.wait)
    other.start()
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(bars_prefetch.threading, "active_count", lambda: len(threading.enumerate()))
            assert prefetch_bars(_config(csv_file, tmp_path / "cache"), []) is None
    finally:
        done.set()
        other.join()


def _config(path: Path | str | None, cache_dir: Path, cache: object = True) -> DictConfig:
    config = OmegaConf.create(
        {
            "timeframe": "1m",
            "data": {
                "_target_": "atb.data.node.MarketData",
                "path": None if path is None else str(path),
                "timeframe": "${timeframe}",
                "cache": cache,
                "cache_dir": str(cache_dir),
            },
        }
    )
    assert isinstance(config, DictConfig)
    return config


def _entries(cache_dir: Path) -> list[Path]:
    return [p for p in cache_dir.glob("*") if not p.name.startswith(".")]


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    return write_bars_csv(random_walk_bars(3000), tmp_path / "walk.csv")


def test_the_file_is_in_the_cache_before_any_job_asks(
    csv_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    process = prefetch_bars(_config(csv_file, cache_dir), ["strategy.fast=5,10"])
    assert process is not None
    process.join(30)
    assert process.exitcode == 0 and len(_entries(cache_dir)) == 1

    def no_parse(*_a: object, **_k: object) -> None:
        raise AssertionError("a job parsed the file again")

    monkeypatch.setattr(bars_cache, "load_bars", no_parse)
    bars, digest = bars_cache.load_cached(csv_file, "1m", cache_dir)
    assert len(bars) == 3000 and digest


@pytest.mark.parametrize(
    ("overrides", "why"),
    [
        (["data.path=a.csv,b.csv"], "the file is swept"),
        (["timeframe=1m,5m"], "the timeframe is swept"),
        (["data=csv,bundled"], "the data group is swept"),
    ],
)
def test_a_swept_file_is_left_to_its_jobs(
    csv_file: Path, tmp_path: Path, overrides: list[str], why: str
) -> None:
    config = _config(csv_file, tmp_path / "cache")
    assert prefetch_bars(config, overrides) is None, why
    assert not (tmp_path / "cache").exists()


def test_a_file_named_by_a_swept_key_is_left_to_its_jobs(csv_file: Path, tmp_path: Path) -> None:
    config = _config(str(tmp_path / "${symbol}.csv"), tmp_path / "cache")
    config.symbol = "walk"
    assert prefetch_bars(config, ["symbol=walk,other"]) is None
    assert not (tmp_path / "cache").exists()


def test_a_swept_period_still_reads_one_file(csv_file: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    process = prefetch_bars(
        _config(csv_file, cache_dir), ["data.start=2021-01-01,2021-01-02", "strategy.fast=5,10"]
    )
    assert process is not None
    process.join(30)
    assert process.exitcode == 0 and len(_entries(cache_dir)) == 1


@pytest.mark.slow  # ~2 s of deliberately slow writes: the full suite only
def test_a_prefetch_stopped_mid_write_leaves_no_partial_copy(
    csv_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The launcher's exit terminates a prefetch still running (SIGTERM): stopped while it
    writes the cache, it removes its half-written directory and leaves no entry."""
    save = np.save

    def slow_save(*args: object, **kwargs: object) -> None:  # the forked child inherits it
        save(*args, **kwargs)  # type: ignore[arg-type]
        time.sleep(0.3)

    monkeypatch.setattr(np, "save", slow_save)
    cache_dir = tmp_path / "cache"
    process = prefetch_bars(_config(csv_file, cache_dir), [])
    assert process is not None
    deadline = time.monotonic() + 10
    while not list(cache_dir.glob(".*/*.npy")) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert list(cache_dir.glob(".*/*.npy")), "the prefetch never started writing"
    process.terminate()
    process.join(30)
    assert [p for p in cache_dir.glob(".*") if p.is_dir()] == []
    assert _entries(cache_dir) == []


def test_nothing_to_warm(csv_file: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    assert prefetch_bars(_config(None, cache_dir), []) is None  # the bundled file
    assert prefetch_bars(_config(csv_file, cache_dir, cache=False), []) is None
    assert prefetch_bars(_config(csv_file, cache_dir, cache="off"), []) is None
    small = prefetch_bars(_config(csv_file, cache_dir, cache="auto"), [])
    assert small is None  # below cache=auto's size
    assert prefetch_bars(_config(tmp_path / "missing.csv", cache_dir), []) is None
    assert not cache_dir.exists()


def test_a_bad_file_leaves_no_entry_and_the_job_still_says_why(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close,volume\nnot-a-time,1,2,0.5,1.5,3\n")
    cache_dir = tmp_path / "cache"
    process = prefetch_bars(_config(bad, cache_dir), [])
    assert process is not None
    process.join(30)
    assert process.exitcode == 1
    assert not cache_dir.exists() or not _entries(cache_dir)
    with pytest.raises(DataError, match=r"bad\.csv"):
        bars_cache.load_cached(bad, "1m", cache_dir)
