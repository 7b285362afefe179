"""ml_basic speed: signals over 2024 including model inference (target <= 1 s).

Measures the strategy's own work, bars in memory → SignalFrame (window normalisation,
onnxruntime in batches, the sizing rule, the predictions frame), in two ways:
- warm: best of several calls in this process, with a per-stage breakdown;
- cold: a fresh interpreter doing what a default run does (import, load the shipped
  model, first `signals()` call), since the first call pays onnxruntime's warm-up.
Run: `nox -s bench` or `pytest tests/benchmarks/bench_ml.py -s -o python_files=bench_*.py`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pandas as pd

from atb.data.loader import load_bars, select_period
from atb.ml.features import FEATURES, normalised_windows
from atb.runtime.context import RunContext
from atb.strategies.ml_basic import MlBasic, MlBasicConfig, decide

TARGET_S = 1.0
REPEATS = 7


def bars_2024() -> pd.DataFrame:
    bars: pd.DataFrame = load_bars()  # type: ignore[assignment,unused-ignore]
    return select_period(
        bars, pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2025-01-01", tz="UTC")
    )


def make_strategy() -> MlBasic:
    cfg = MlBasicConfig.model_validate({"_target_": "atb.strategies.ml_basic.MlBasic"})
    return MlBasic(cfg, RunContext())


def best(fn: Any, repeats: int = REPEATS) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def test_ml_basic_signals_2024_warm() -> None:
    bars = bars_2024()
    strategy = make_strategy()
    t0 = time.perf_counter()
    strategy.start()
    load_s = time.perf_counter() - t0
    model = strategy.model
    assert model is not None
    first_t0 = time.perf_counter()
    frame = strategy.signals(bars)
    first_s = time.perf_counter() - first_t0
    total = best(lambda: strategy.signals(bars))

    data = bars[list(FEATURES)].to_numpy(dtype=np.float64)
    norm_s = best(lambda: normalised_windows(data, 120))
    windows = normalised_windows(data, 120)
    infer_s = best(lambda: model.predict(windows.values))
    r = np.random.default_rng(0).normal(0, 0.001, len(windows))
    rule_s = best(lambda: decide(r, strategy.config))
    n_windows = len(windows)
    sized = int((frame.size > 0).sum())
    print(
        f"\nml_basic signals over 2024: {len(bars)} bars, {n_windows} windows "
        f"(model {strategy.model_id})"
        f"\n  model load (start)      {load_s * 1e3:7.1f} ms"
        f"\n  first signals() call    {first_s * 1e3:7.1f} ms"
        f"\n  signals() best of {REPEATS}     {total * 1e3:7.1f} ms  "
        f"({len(bars) / total:,.0f} bars/s; target <= {TARGET_S * 1e3:.0f} ms)"
        f"\n    normalise windows     {norm_s * 1e3:7.1f} ms"
        f"\n    onnxruntime inference {infer_s * 1e3:7.1f} ms  "
        f"({n_windows / infer_s:,.0f} windows/s)"
        f"\n    sizing rule           {rule_s * 1e3:7.1f} ms"
        f"\n  signals: {int((frame.direction == 1).sum())} BUY, "
        f"{int((frame.direction == -1).sum())} SELL, {sized} with size > 0"
    )
    # load + first call are asserted in the cold-process test, where they are measured
    # the way a run pays them; here the steady-state call is the figure.
    assert total <= TARGET_S


COLD = """
import json, time
t0 = time.perf_counter()
import pandas as pd
from atb.data.loader import load_bars, select_period
from atb.runtime.context import RunContext
from atb.strategies.ml_basic import MlBasic, MlBasicConfig
bars = select_period(load_bars(), pd.Timestamp("2024-01-01", tz="UTC"),
                     pd.Timestamp("2025-01-01", tz="UTC"))
t1 = time.perf_counter()
s = MlBasic(MlBasicConfig.model_validate({"_target_": "atb.strategies.ml_basic.MlBasic"}),
            RunContext())
s.start()
t2 = time.perf_counter()
s.signals(bars)
t3 = time.perf_counter()
print(json.dumps({"imports_and_data": t1 - t0, "load": t2 - t1, "signals": t3 - t2}))
"""


def test_ml_basic_signals_2024_cold_process() -> None:
    runs = []
    for _ in range(3):
        out = subprocess.run(
            [sys.executable, "-c", COLD], capture_output=True, text=True, check=True
        ).stdout
        runs.append(json.loads(out.strip().splitlines()[-1]))
    fastest = min(runs, key=lambda r: r["load"] + r["signals"])
    work = fastest["load"] + fastest["signals"]
    print(
        f"\nml_basic cold process (best of 3): imports+data {fastest['imports_and_data']:.2f} s,"
        f" model load {fastest['load'] * 1e3:.0f} ms, first signals() over 2024 "
        f"{fastest['signals'] * 1e3:.0f} ms -> {work * 1e3:.0f} ms (target <= 1000 ms)"
    )
    assert work <= TARGET_S
