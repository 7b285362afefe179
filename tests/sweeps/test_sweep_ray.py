"""The same sweep on Ray (hydra-ray-launcher, the `ray` extra): a private local Ray instance
with 2 CPUs via atb's hydra/launcher=ray_local preset; workers write the SQLite file."""

from __future__ import annotations

import json

import pytest
from sweep_helpers import RunSweep, run_sweep

pytest.importorskip("ray", reason="the `ray` extra is not installed (pip install -e '.[ray]')")
pytest.importorskip(
    "hydra_plugins.hydra_ray_launcher.ray_launcher",
    reason="hydra-ray-launcher is not installed (pip install -e '.[ray]')",
)

__all__ = ["run_sweep"]  # the fixture, used by name below

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_two_job_sweep_on_local_ray(run_sweep: RunSweep) -> None:
    result = run_sweep(
        "hydra/launcher=ray_local", "strategy=sma_crossover", "strategy.fast=5,50",
        "strategy.slow=20",
        # RAY_ADDRESS would be ignored by the preset (address: local); unset it regardless so
        # a developer's cluster is never touched.
        env={"ATB_SWEEP_JOBS": "2", "RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"},
        timeout=420,
    )  # fmt: skip
    assert result.proc.returncode == 0, result.output
    rows = result.rows(
        "select job_num, status, error, metrics from runs where sweep_id = ? order by job_num",
        str(result.sweep_dir),
    )
    assert [(r[0], r[1]) for r in rows] == [(0, "finished"), (1, "failed")], result.output
    assert "must be < strategy.slow" in rows[1][2]
    assert json.loads(rows[0][3])["num_trades"] > 0
    ranking = json.loads(result.rows("select ranking from sweeps")[0][0])
    assert [(r["job_num"], r["rank"]) for r in ranking] == [(0, 1), (1, None)]
    assert "2/2 jobs done, 1 failed" in result.proc.stdout + result.proc.stderr
