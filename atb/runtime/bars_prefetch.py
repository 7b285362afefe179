"""Parse a sweep's candle file into the bars cache while the launcher is still starting.

A sweep's launcher spends a second or two on serial start-up (imports, migrating the
database, validating the grid, starting workers) with the machine's other cores idle,
and then its first jobs all wait while one of them parses the file into the cache
(`atb.data.cache.load_cached`: 1M one-minute bars take ~0.6 s). Forking a process that
parses it at the start of the sweep overlaps the two. The jobs still go through
`load_cached` as always: the entry's lock makes them wait for the prefetch (or do the
parse themselves if it failed), so a bad file is still each job's error to report.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

DATA_NODE = "atb.data.node.MarketData"
SWEPT_KEYS = ("data", "timeframe")


def prefetch_bars(config: DictConfig, overrides: list[str]) -> BaseProcess | None:
    """Start warming the cache for the sweep's one candle file; None when there is
    nothing to warm (no file, caching off or below its size, the file itself swept, or
    a platform that does not fork)."""
    target = _cached_file(config, overrides)
    if target is None:
        return None
    from atb.runtime.tuning import fork_available

    if not fork_available():
        return None
    path, timeframe, cache_dir = target
    process = multiprocessing.get_context("fork").Process(
        target=_warm, args=(path, timeframe, cache_dir), name="atb-bars-prefetch", daemon=True
    )
    process.start()
    return process


def _cached_file(config: DictConfig, overrides: list[str]) -> tuple[Path, str, Path | None] | None:
    if _sweeps_data(overrides):
        return None
    with contextlib.suppress(Exception):  # an odd data section is the jobs' error to report
        node = OmegaConf.select(config, "data")
        if not isinstance(node, DictConfig) or node.get("_target_") != DATA_NODE:
            return None
        section: dict[str, Any] = OmegaConf.to_container(node, resolve=True)  # type: ignore[assignment]
        raw = section.get("path")
        if not raw:
            return None
        path = Path(str(raw)).expanduser()
        if not path.is_file():
            return None
        from atb.data.cache import AUTO_MIN_BYTES

        cache = section.get("cache", "auto")
        if cache is False or (cache == "auto" and path.stat().st_size < AUTO_MIN_BYTES):
            return None
        cache_dir = section.get("cache_dir")
        return path, str(section["timeframe"]), Path(cache_dir) if cache_dir else None
    return None


def _sweeps_data(overrides: list[str]) -> bool:
    """True when the grid varies the file or its timeframe (then each job has its own)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:
        return True  # unparseable: leave it to the sweeper's own error
    return any(
        o.is_sweep_override() and o.key_or_group.lstrip("+~").startswith(SWEPT_KEYS) for o in parsed
    )


def _warm(path: Path, timeframe: str, cache_dir: Path | None) -> None:
    """The forked child: parse into the cache, say nothing, never run the parent's exit."""
    code = 0
    try:
        from atb.data.cache import load_cached

        load_cached(path, timeframe, cache_dir)
    except BaseException:  # the jobs parse again and report it with their context
        code = 1
    finally:
        os._exit(code)
