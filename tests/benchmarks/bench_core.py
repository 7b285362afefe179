"""Core runtime speed: CLI start-up and the runner's own overhead.

Targets (issue 2): `python -m atb --help` and `atb --help` <= 0.5 s wall; the runner adds
<= 50 ms over the nodes' own work. The baseline for the overhead is the same nodes built,
started, run and stopped by hand, in the same process and run.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "core"))

from atb.config.validate import validate_config
from atb.runtime.context import RunContext
from atb.runtime.runner import Runner


def wall(cmd: list[str], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def test_cli_help_startup() -> None:
    python_only = wall([sys.executable, "-c", "pass"])
    module_help = wall([sys.executable, "-m", "atb", "--help"])
    script = shutil.which("atb")
    script_help = wall([script, "--help"]) if script else wall([sys.executable, "-m", "atb.cli"])
    print(
        f"\n[core] bare python: {python_only * 1000:.0f} ms | python -m atb --help: "
        f"{module_help * 1000:.0f} ms | atb --help: {script_help * 1000:.0f} ms (target <= 500 ms)"
    )
    assert module_help <= 0.5
    assert script_help <= 0.5


def graph(n: int) -> dict[str, Any]:
    nodes: dict[str, Any] = {
        f"n{i}": {
            "_target_": "sample_nodes.Labelled",
            "label": f"n{i}",
            "needs": [f"n{i - 1}"] if i else [],
        }
        for i in range(n)
    }
    return {"mode": "backtest", "runner": {"main": f"n{n - 1}"}, **nodes}


def test_runner_overhead() -> None:
    import sample_nodes

    n = 12
    cfg = graph(n)
    validate_config(cfg)  # warm imports once, as a real run has them already imported

    def by_hand() -> None:
        validated = validate_config(cfg)
        ctx = RunContext()
        built = [spec.cls(config=spec.config, ctx=ctx) for spec in validated.nodes.values()]
        for node in built:
            node.start()
        built[-1].run()
        for node in reversed(built):
            node.stop()

    def by_runner() -> None:
        Runner(validate_config(cfg), RunContext()).run()

    samples: dict[str, list[float]] = {"hand": [], "runner": []}
    for _ in range(30):
        for name, fn in (("hand", by_hand), ("runner", by_runner)):
            sample_nodes.JOURNAL.clear()
            t0 = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t0)
    hand = statistics.median(samples["hand"])
    runner = statistics.median(samples["runner"])
    overhead = runner - hand
    print(
        f"\n[core] {n}-node graph: by hand {hand * 1000:.2f} ms, runner {runner * 1000:.2f} ms, "
        f"overhead {overhead * 1000:.2f} ms (target <= 50 ms), ratio {runner / hand:.2f}x"
    )
    assert overhead <= 0.050
