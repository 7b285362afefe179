"""Backtest speed: atb's sma_crossover vs backtesting.py's, same data, same process.

Targets (issue 3):
- sma_crossover over all bundled bars: atb's bars/s >= 20x backtesting.py's, with the same
  entry/exit timestamps for every trade (long-only, fills at the next open);
- ml_basic over 2024 including model inference <= 1 s (when atb.strategies.ml_basic exists);
- default `python -m atb` end to end <= 3 s wall.

Both engines are timed end to end from bars in memory to finished statistics (signals,
the trading loop, metrics), the median of several interleaved repetitions so a busy machine
hurts both alike, in several fresh processes. `backtesting` is a bench-only dependency
(pip install backtesting).
Run: `nox -s bench` or `python tests/benchmarks/bench_backtest.py`.
"""

from __future__ import annotations

import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from atb.data.loader import load_bars, select_period
from atb.engine.backtest import BacktestSettings, run_backtest
from atb.runtime.context import RunContext
from atb.strategies.sma_crossover import SmaCrossover, SmaCrossoverConfig

FAST, SLOW = 10, 50
REPEATS = 15  # backtesting.py runs; atb runs 5 between each (median of 75)
PROCESSES = 5  # fresh interpreters, each with its own medians: the figure is their median
ROOT = Path(__file__).resolve().parents[2]


def _backtesting_py(bars: pd.DataFrame) -> tuple[Any, Any]:
    """backtesting.py's canonical SmaCross, long-only like atb's default."""
    import backtesting.backtesting as engine
    from backtesting import Backtest, Strategy
    from backtesting.lib import crossover

    # Its per-bar progress bar is not part of the work being compared (atb's is off too).
    engine._tqdm = lambda seq, **_: seq

    def sma(values: Any, n: int) -> pd.Series:
        return pd.Series(values).rolling(n).mean()

    class SmaCross(Strategy):  # type: ignore[misc]
        def init(self) -> None:
            self.fast = self.I(sma, self.data.Close, FAST)
            self.slow = self.I(sma, self.data.Close, SLOW)

        def next(self) -> None:
            if crossover(self.fast, self.slow):
                if not self.position:
                    self.buy()
            elif crossover(self.slow, self.fast):
                self.position.close()

    frame = bars.rename(columns=str.capitalize)
    frame.index = frame.index.tz_localize(None)
    # Cash large enough to buy whole BTC units: sizing does not change the signal timing.
    return Backtest, lambda: Backtest(frame, SmaCross, cash=1e8, commission=0.001).run()


def _atb(bars: pd.DataFrame) -> Any:
    strategy = SmaCrossover(
        SmaCrossoverConfig(
            _target_="atb.strategies.sma_crossover.SmaCrossover", fast=FAST, slow=SLOW
        ),
        RunContext(),
    )
    settings = BacktestSettings(close_at_end=False)  # backtesting.py leaves it open too
    return lambda: run_backtest(bars, strategy, settings, bar_seconds=3600.0)


def _best(fn: Any) -> tuple[float, Any]:
    gc.collect()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def _one_process() -> dict[str, Any]:
    """One process's figures: medians of interleaved runs (load spikes hit both engines)."""
    warnings.simplefilter("ignore")
    os.environ.setdefault("TQDM_DISABLE", "1")
    bars = load_bars()
    _, run_bt = _backtesting_py(bars)
    run_atb = _atb(bars)
    run_atb()  # warm imports/caches for both, outside the timing
    run_bt()
    atb_times: list[float] = []
    bt_times: list[float] = []
    for _ in range(REPEATS):
        for _ in range(5):
            atb_times.append(_best(run_atb)[0])
        bt_times.append(_best(run_bt)[0])
    return {
        "bars": len(bars),
        "atb_s": statistics.median(atb_times),
        "bt_s": statistics.median(bt_times),
        "best": min(bt_times) / min(atb_times),
    }


def test_sma_crossover_vs_backtesting_py() -> None:
    """The ratio is the median over PROCESSES fresh interpreters, each the median of 75 atb
    and 15 backtesting.py runs: on this 2-core VM one process's backtesting.py time moves
    by +-15 % from the next process's (memory layout, the host), more than within a process.
    """
    pytest.importorskip("backtesting", reason="bench-only dependency: pip install backtesting")
    warnings.simplefilter("ignore")
    os.environ.setdefault("TQDM_DISABLE", "1")
    bars = load_bars()
    _, run_bt = _backtesting_py(bars)
    atb_result, bt_stats = _atb(bars)(), run_bt()
    ours = [
        (t.entry_time.replace(tzinfo=None), t.exit_time.replace(tzinfo=None))
        for t in atb_result.trades
    ]
    theirs = [
        (a.to_pydatetime(), b.to_pydatetime())
        for a, b in zip(bt_stats._trades.EntryTime, bt_stats._trades.ExitTime, strict=True)
    ]
    assert ours == theirs, "entry/exit timestamps differ from backtesting.py"

    runs = []
    for _ in range(PROCESSES):
        proc = subprocess.run(
            [sys.executable, __file__, "--one-process"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        )  # fmt: skip
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    ratios = [r["bt_s"] / r["atb_s"] for r in runs]
    ratio = statistics.median(ratios)
    atb_s = statistics.median(r["atb_s"] for r in runs)
    bt_s = statistics.median(r["bt_s"] for r in runs)
    n = runs[0]["bars"]
    one, five, _ = os.getloadavg()
    print(
        f"\nsma_crossover({FAST},{SLOW}) over {n} bars, {len(ours)} trades as backtesting.py's"
        f" ({atb_result.steps} bars stepped); {PROCESSES} processes x (median of"
        f" {5 * REPEATS} atb / {REPEATS} backtesting.py runs), load {one:.1f}/{five:.1f}"
        f" on {os.cpu_count()} cores:"
        f"\n  atb           {atb_s * 1e3:8.1f} ms  {n / atb_s:12,.0f} bars/s"
        f"\n  backtesting.py {bt_s * 1e3:7.1f} ms  {n / bt_s:12,.0f} bars/s"
        f"\n  ratio         {ratio:8.1f}x  median of the processes'"
        f" ({', '.join(f'{r:.1f}' for r in ratios)}; target >= 20x, >= 25x on a quiet box)"
        f"\n  best-of       {statistics.median(r['best'] for r in runs):8.1f}x"
    )
    assert ratio >= 20, f"atb is only {ratio:.1f}x backtesting.py's bars/s"


def test_ml_basic_2024_under_1s() -> None:
    ml = pytest.importorskip("atb.strategies.ml_basic", reason="ml_basic not built yet")
    bars = select_period(
        load_bars(), pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2025-01-01", tz="UTC")
    )
    cls = ml.MlBasic
    config = cls.config_model.model_validate(
        {"_target_": "atb.strategies.ml_basic.MlBasic", "name": "ml_basic"}
    )
    times = []
    for _ in range(3):
        strategy = cls(config=config, ctx=RunContext())
        if hasattr(strategy, "start"):
            strategy.start()
        t0 = time.perf_counter()
        result = run_backtest(bars, strategy, BacktestSettings(), bar_seconds=3600.0)
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(
        f"\nml_basic over 2024 ({len(bars)} bars, inference included): {best * 1e3:.0f} ms, "
        f"{result.metrics['num_trades']} trades (target <= 1000 ms)"
    )
    assert best <= 1.0


def test_default_run_under_3s() -> None:
    pytest.importorskip("atb.strategies.ml_basic", reason="ml_basic not built yet")
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "ATB_OUTPUT_DIR": str(Path(tmp) / "outputs")}
        cmd = [sys.executable, "-m", "atb", f"db.url=sqlite:///{tmp}/atb.db"]
        walls = []
        for _ in range(3):
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            assert proc.returncode == 0, proc.stderr[-2000:]
    print(f"\ndefault `python -m atb` wall: best {min(walls):.2f} s of {walls} (target <= 3 s)")
    assert min(walls) <= 3.0


if __name__ == "__main__":
    if sys.argv[1:] == ["--one-process"]:
        print(json.dumps(_one_process()))
        raise SystemExit(0)
    raise SystemExit(pytest.main([__file__, "-s", "-o", "python_files=bench_*.py"]))
