"""What each process-wide patch in `atb.runtime.tuning` buys, against the unpatched behaviour.

Every measurement runs both sides in the same run (alternating, best of a few) and prints
the ratio; each test asserts only that the patch is not slower (ratio >= 1), the figures
are what the module docstring quotes. Run: `nox -s bench -- -k tuning` or
`python tests/benchmarks/bench_tuning.py`.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from atb.runtime import tuning

ROOT = Path(__file__).parents[2]


def best(fn: Callable[[], float], repeat: int = 3) -> float:
    return min(fn() for _ in range(repeat))


def compare(what: str, plain: float, fast: float, unit: str = "ms", scale: float = 1000) -> None:
    """Print `what`: unpatched -> patched and the ratio; the patch must not be slower."""
    print(
        f"\n[tuning] {what}: {plain * scale:.2f} {unit} unpatched -> {fast * scale:.2f} {unit} "
        f"patched, ratio {plain / fast:.2f}x"
    )
    assert plain / fast > 1.0


# -- fast_sqlite_binding ----------------------------------------------------------------------

ROWS = [(i, None, None, i * 0.5, None, True, "x", None) for i in range(200_000)]


def _insert_seconds() -> float:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE t (a, b, c, d, e, f, g, h)")
    t0 = time.perf_counter()
    conn.executemany("INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ROWS)
    elapsed = time.perf_counter() - t0
    conn.close()
    return elapsed


def measure_sqlite() -> tuple[float, float]:
    adapters = sqlite3.adapters  # type: ignore[attr-defined]
    keys = [(type(None), sqlite3.PrepareProtocol), (bool, sqlite3.PrepareProtocol)]
    saved = {k: adapters.pop(k) for k in keys if k in adapters}
    try:
        plain = best(_insert_seconds)
        tuning.fast_sqlite_binding()
        fast = best(_insert_seconds)
    finally:
        for k in keys:
            adapters.pop(k, None)
        adapters.update(saved)
    return plain, fast


def test_fast_sqlite_binding() -> None:
    compare(f"sqlite3 executemany of {len(ROWS):,} rows with 4 None/bool", *measure_sqlite())


# -- skip_hydra_mode_probe ----------------------------------------------------------------------

UNPATCHED_START = (
    "import sys; import atb.runtime.tuning as t; t.skip_hydra_mode_probe = lambda a: None; "
    "from atb.__main__ import main; main(sys.argv[1:])"
)


def _start_seconds(code: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", code, "--cfg", "job"], check=True, capture_output=True, env=env
    )
    return time.perf_counter() - t0


def measure_start() -> tuple[float, float]:
    patched_code = "import sys; from atb.__main__ import main; main(sys.argv[1:])"
    plain = best(lambda: _start_seconds(UNPATCHED_START))
    fast = best(lambda: _start_seconds(patched_code))
    return plain, fast


def test_skip_hydra_mode_probe() -> None:
    compare("python -m atb --cfg job wall time (Hydra's mode probe skipped)", *measure_start())


# -- cover_sweep_validation -------------------------------------------------------------------

GRID = [
    [f"strategy.fast={f}", f"strategy.slow={s}", "strategy=sma_crossover"]
    for f in (5, 10, 15, 20, 25, 30)
    for s in (60, 90, 120, 150)
]


def _compose_seconds(batch: list[list[str]]) -> float:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from atb.__main__ import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        t0 = time.perf_counter()
        for job in batch:
            compose(config_name="config", overrides=list(job))
        return time.perf_counter() - t0


def measure_cover() -> tuple[float, float, int]:
    covering = [list(job) for job in tuning.covering_jobs(GRID)]
    plain = best(lambda: _compose_seconds(GRID), repeat=2)
    fast = best(lambda: _compose_seconds(covering), repeat=2)
    return plain, fast, len(covering)


def test_cover_sweep_validation() -> None:
    plain, fast, n = measure_cover()
    compare(f"validating a {len(GRID)}-job sweep ({n} covering jobs composed)", plain, fast)


# -- fork_joblib_workers ----------------------------------------------------------------------


def _first_job(backend: str) -> float:
    code = (
        "import time, joblib, atb.engine.backtest, atb.runtime.runner\n"
        "def job(i):\n"
        "    import atb.engine.backtest, atb.runtime.runner\n"
        "    return i\n"
        "t0 = time.perf_counter()\n"
        f"joblib.Parallel(n_jobs=2, backend={backend!r})"
        "(joblib.delayed(job)(i) for i in range(2))\n"
        "print(time.perf_counter() - t0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env
    )
    return float(out.stdout.strip().splitlines()[-1])


def measure_fork() -> tuple[float, float]:
    plain = best(lambda: _first_job("loky"), repeat=2)
    fast = best(lambda: _first_job("multiprocessing"), repeat=2)
    return plain, fast


def test_fork_joblib_workers() -> None:
    compare("2 sweep workers ready with atb's modules (loky -> forked)", *measure_fork())


# -- shorter_switch_interval ------------------------------------------------------------------


def _request_p90_ms(n: int = 300) -> float:
    """p90 time of a "request" (4 short blocking calls, each giving the GIL away and taking
    it back, as a socket read/write does) while a second thread spins in Python."""
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            x += 1

    spinner = threading.Thread(target=spin)
    spinner.start()
    time.sleep(0.05)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        for _ in range(4):
            time.sleep(0)
        times.append(time.perf_counter() - t0)
    stop.set()
    spinner.join()
    times.sort()
    return times[int(len(times) * 0.9)] * 1000


def measure_switch() -> tuple[float, float]:
    plain = best(_request_p90_ms)
    restore = tuning.shorter_switch_interval(0.0005)
    try:
        fast = best(_request_p90_ms)
    finally:
        restore()
    return plain, fast


def test_shorter_switch_interval() -> None:
    what = "p90 of 4 GIL hand-backs while a thread spins (5 ms -> 0.5 ms switch interval)"
    compare(what, *measure_switch(), scale=1)


if __name__ == "__main__":
    for test in (
        test_fast_sqlite_binding,
        test_skip_hydra_mode_probe,
        test_cover_sweep_validation,
        test_fork_joblib_workers,
        test_shorter_switch_interval,
    ):
        test()
