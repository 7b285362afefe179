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
import signal
import threading
from multiprocessing.process import BaseProcess
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

DATA_NODE = "atb.data.node.MarketData"
# Swept keys that leave the file alone: the same file, other periods or labels.
SAME_FILE = ("data.start", "data.end", "data.symbol")


def prefetch_bars(config: DictConfig, overrides: list[str]) -> BaseProcess | None:
    """Start warming the cache for the sweep's one candle file; None when there is
    nothing to warm (no cached file, the file depends on a swept key) or no safe way to
    (a platform that does not fork, other threads running in the launcher)."""
    from atb.runtime.tuning import fork_available

    if not fork_available() or threading.active_count() > 1:
        return None  # a fork while another thread holds a lock can hang the child
    target = _cached_file(config, overrides)
    if target is None:
        return None
    path, timeframe, cache_dir = target
    try:
        process = multiprocessing.get_context("fork").Process(
            target=_warm, args=(path, timeframe, cache_dir), name="atb-bars-prefetch", daemon=True
        )
        process.start()
    except Exception:  # no process to spare (EAGAIN, a daemonic launcher): the jobs parse
        return None
    return process


def _cached_file(config: DictConfig, overrides: list[str]) -> tuple[Path, str, Path | None] | None:
    node = OmegaConf.select(config, "data")
    if not isinstance(node, DictConfig) or node.get("_target_") != DATA_NODE:
        return None
    if _file_is_swept(node, overrides):
        return None
    with contextlib.suppress(Exception):  # an odd data section is the jobs' error to report
        from atb.data.node import MarketDataConfig, cached_file

        cfg = MarketDataConfig.model_validate(OmegaConf.to_container(node, resolve=True))
        path = cached_file(cfg)
        if path is not None:
            return path, cfg.timeframe, cfg.cache_dir
    return None


def _file_is_swept(node: DictConfig, overrides: list[str]) -> bool:
    """True when a swept key can change the file the jobs read: the data group, a data
    key other than the period, the timeframe, or any key the data section interpolates
    (`path: candles/${symbol}.csv` with `symbol=A,B`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception:
        return True  # unparseable: leave it to the sweeper's own error
    swept = [o.key_or_group.lstrip("+~") for o in parsed if o.is_sweep_override()]
    text = OmegaConf.to_yaml(node, resolve=False)
    for key in swept:
        if key in SAME_FILE:
            continue
        if key == "data" or key.startswith(("data.", "data/", "timeframe")):
            return True
        if f"${{{key}}}" in text or f"${{{key}." in text:
            return True
    return False


def _warm(path: Path, timeframe: str, cache_dir: Path | None) -> None:
    """The forked child: parse into the cache, say nothing, never run the parent's exit.

    The launcher's exit terminates a prefetch still running (SIGTERM to daemonic
    children): raising then lets the cache's writer remove its half-written directory."""

    def stop(_signum: int, _frame: object) -> None:
        raise SystemExit(1)

    signal.signal(signal.SIGTERM, stop)
    code = 0
    try:
        from atb.data.cache import load_cached

        load_cached(path, timeframe, cache_dir)
    except BaseException:  # the jobs parse again and report it with their context
        code = 1
    finally:
        os._exit(code)
