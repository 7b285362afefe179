"""Sweep throughput: backtests/minute with 2 local workers vs serial, same sweep, same run.

Target (issue 10): the default launcher with 2 workers (ATB_SWEEP_JOBS=2) completes >= 1.7x
the backtests per minute of the same launcher run serially (ATB_SWEEP_JOBS=1: joblib then
runs the jobs one after another in the launching process).

Each sweep is a real `python -m atb -m` subprocess: a 24-job sma_crossover grid (6 fast x 4
slow) over all the bundled candles, every job a full recorded run into one SQLite file.
Two rates are measured from the sweep's stderr progress lines:
- throughput: jobs completed per minute while the sweep runs (first job done -> last job
  done), the rate the target is about; a bigger grid only runs longer at this rate;
- whole sweep: from the start line (`[sweep] 24 jobs -> ...`) to the last job, so it also
  carries the once-per-sweep costs (Hydra's up-front config validation in the launching
  process, starting the worker pool); printed, with whole-command wall times.
Serial and parallel runs alternate and the best of each is kept, so a busy machine hurts
both alike. Run: `nox -s bench -- -k sweep` or `python tests/benchmarks/bench_sweep.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

GRID = ["strategy.fast=5,10,15,20,25,30", "strategy.slow=60,90,120,150"]
JOBS = 24
REPEATS = 2
TARGET = 1.7


@dataclass
class Timing:
    workers: int
    done: list[float]  # seconds from the sweep's start line to each job's progress line
    wall_s: float  # the whole command

    @property
    def per_minute(self) -> float:
        """Jobs per minute while running: first job done -> last job done."""
        return (len(self.done) - 1) / (self.done[-1] - self.done[0]) * 60

    @property
    def whole_per_minute(self) -> float:
        return len(self.done) / self.done[-1] * 60


def run_sweep(workers: int, tmp: Path) -> Timing:
    tag = f"w{workers}-{time.monotonic_ns()}"
    env = {
        **os.environ,
        "ATB_SWEEP_JOBS": str(workers),
        "ATB_MULTIRUN_DIR": str(tmp / tag),
        "ATB_OUTPUT_DIR": str(tmp / "outputs"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("ATB_DB_URL", None)
    cmd = [sys.executable, "-m", "atb", "-m", "strategy=sma_crossover", *GRID,
           "backtest.summary=false", f"db.url=sqlite:///{tmp / tag}.db"]  # fmt: skip
    t0 = time.perf_counter()
    started: float | None = None
    done: list[float] = []
    proc = subprocess.Popen(
        cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        now = time.perf_counter()
        if line.startswith(f"[sweep] {JOBS} jobs ->"):
            started = now
        elif started is not None and line.startswith("[sweep] ") and " jobs done, 0 failed" in line:
            done.append(now - started)
    assert proc.wait(timeout=900) == 0, f"sweep with {workers} worker(s) failed"
    assert len(done) == JOBS, f"saw {len(done)} of {JOBS} progress lines"
    return Timing(workers=workers, done=done, wall_s=time.perf_counter() - t0)


def measure() -> tuple[Timing, Timing]:
    best: dict[int, Timing] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(REPEATS):
            for workers in (1, 2):
                t = run_sweep(workers, Path(tmp))
                print(f"  {workers} worker(s): {t.per_minute:6.1f} backtests/min running,"
                      f" whole sweep {t.done[-1]:5.1f} s ({t.whole_per_minute:5.1f}/min),"
                      f" command {t.wall_s:5.1f} s")  # fmt: skip
                if workers not in best or t.per_minute > best[workers].per_minute:
                    best[workers] = t
    return best[1], best[2]


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs at least 2 cores")
def test_two_workers_vs_serial() -> None:
    print(f"\nsweep throughput: {JOBS} sma_crossover backtests over all bundled bars")
    serial, parallel = measure()
    ratio = parallel.per_minute / serial.per_minute
    whole = parallel.whole_per_minute / serial.whole_per_minute
    print(
        f"  best: serial {serial.per_minute:.1f}/min, 2 workers {parallel.per_minute:.1f}/min"
        f" -> {ratio:.2f}x (target >= {TARGET}x); whole sweep {whole:.2f}x,"
        f" whole command {serial.wall_s / parallel.wall_s:.2f}x"
    )
    assert ratio >= TARGET


if __name__ == "__main__":
    test_two_workers_vs_serial()
