"""Sweep pieces in-process: parameters, counting, ranking, the table, redaction, the
one-time migration before jobs start, and every shipped experiment composing and validating."""

from __future__ import annotations

import gc
import itertools
import math
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from joblib import delayed
from omegaconf import DictConfig, OmegaConf, open_dict

from atb.__main__ import CONFIG_DIR
from atb.config.validate import validate_config
from atb.db.migrate import head_revision
from atb.runtime.errors import ConfigError
from atb.runtime.sweep import (
    TOTAL,
    SweepCallback,
    count_jobs,
    format_ranking,
    rank_runs,
    redact_multirun_yaml,
    sweep_overrides,
    tune_local_sweep,
)
from atb.runtime.sweep_store import overrides_to_parameters
from atb.runtime.tuning import covering_jobs

EXPERIMENTS = sorted(p.stem for p in (Path(CONFIG_DIR) / "experiment").glob("*.yaml"))


def composed(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=True)


def test_parameters_keep_json_scalars_and_the_text_of_anything_else() -> None:
    params = overrides_to_parameters(
        ["strategy.fast=5", "+strategy.x=0.5", "~foo=1", "data.start=2024-06-01", "flag=true",
         "name=abc", "strategy=sma_crossover", "bare"]
    )  # fmt: skip
    assert params == {
        "strategy.fast": 5, "strategy.x": 0.5, "foo": 1, "data.start": "2024-06-01",
        "flag": True, "name": "abc", "strategy": "sma_crossover",
    }  # fmt: skip


def test_count_jobs_multiplies_sweep_axes() -> None:
    assert count_jobs(["strategy.fast=5,10,20", "strategy.slow=50,100", "mode=backtest"]) == 6
    assert count_jobs(["strategy.fast=range(1,5)"]) == 4
    assert count_jobs(["mode=backtest"]) == 1


def test_sweep_overrides_merge_experiment_params_with_the_command_line() -> None:
    cfg = OmegaConf.create(
        {"hydra": {"sweeper": {"params": {"strategy.fast": "10,20,50", "strategy.slow": "1,2"}},
                   "overrides": {"task": ["strategy.slow=100,200,300", "db.url=x"]}}}
    )  # fmt: skip
    merged = sweep_overrides(cfg)
    assert "strategy.slow=100,200,300" in merged and "strategy.slow=1,2" not in merged
    assert count_jobs(merged) == 9


def _run(job: int, status: str = "finished", **metrics: Any) -> dict[str, Any]:
    params = {"strategy.fast": job, "mode": "backtest"}
    return {"run_id": f"r{job}", "job_num": job, "status": status, "error": None,
            "parameters": params, "metrics": metrics}  # fmt: skip


def test_ranking_orders_by_metric_then_unscored_then_failed() -> None:
    runs = [
        _run(0, sharpe=0.5), _run(1, "failed"), _run(2, sharpe=1.5), _run(3, sharpe=math.nan),
        _run(4, sharpe=-1.0), _run(5),
    ]  # fmt: skip
    ranked = rank_runs(runs, "sharpe")
    assert [r["job_num"] for r in ranked] == [2, 0, 4, 3, 5, 1]
    assert [r["rank"] for r in ranked] == [1, 2, 3, 4, 5, None]
    ascending = rank_runs(runs, "sharpe", descending=False)
    assert [r["job_num"] for r in ascending][:3] == [4, 0, 2]


def test_table_shows_the_varying_parameters_and_failure_reasons() -> None:
    failed = {**_run(1, "failed"), "error": "config error: strategy.fast: must be < slow"}
    table = format_ranking(rank_runs([_run(0, sharpe=1.0), failed], "sharpe"), "sharpe")
    lines = table.splitlines()
    assert lines[0].split()[:4] == ["rank", "job", "status", "sharpe"]
    assert "strategy.fast=0" in lines[1] and "1.0000" in lines[1]
    assert "mode=backtest" not in table  # the same in every job
    assert lines[2].startswith("-") and "must be < slow" in lines[2]


def test_multirun_yaml_secrets_are_masked(tmp_path: Path) -> None:
    secret = "exchange.api_secret=s3cr3t-value"
    doc = {"hydra": {"overrides": {"task": [secret, "a=1"], "hydra": []},
                     "job": {"override_dirname": f"{secret},a=1"}}}  # fmt: skip
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump(doc))
    redact_multirun_yaml(tmp_path)
    text = (tmp_path / "multirun.yaml").read_text()
    assert "s3cr3t-value" not in text and "a=1" in text


def _sweep_config(tmp_path: Path, *extra: str) -> DictConfig:
    cfg = composed([f"db.url=sqlite:///{tmp_path / 'x.db'}", *extra])
    with open_dict(cfg):
        cfg.hydra.sweep.dir = str(tmp_path / "sweep")
        cfg.hydra.overrides.task = ["strategy.fast=5,10", "strategy.slow=50,100,200"]
    return cfg


def test_multirun_start_migrates_an_empty_database_once(tmp_path: Path) -> None:
    """Workers then only read the revision: none of them races another on an empty DB."""
    SweepCallback().on_multirun_start(_sweep_config(tmp_path))
    with sqlite3.connect(tmp_path / "x.db") as conn:
        assert conn.execute("select version_num from alembic_version").fetchone()[0] == (
            head_revision()
        )
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert (tmp_path / "sweep" / TOTAL).read_text() == "6"


def test_multirun_start_stops_a_sweep_every_job_would_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        SweepCallback().on_multirun_start(_sweep_config(tmp_path, "db.auto_migrate=false"))
    assert exc.value.code == 1
    assert "atb db upgrade" in capsys.readouterr().err


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_composes_and_every_job_validates(name: str) -> None:
    cfg = composed([f"+experiment={name}"])
    params = OmegaConf.to_container(cfg.hydra.sweeper.params)
    assert isinstance(params, dict) and params, f"{name} sweeps nothing"
    axes = [[f"{k}={v}" for v in str(vals).split(",")] for k, vals in params.items()]
    assert count_jobs(sweep_overrides(cfg)) == math.prod(len(a) for a in axes)
    base = composed([f"+experiment={name}"])
    with open_dict(base):
        del base["hydra"]  # jobs see it resolved per job; validation ignores it
    invalid = 0
    for combo in itertools.product(*axes):
        job = base.copy()
        for item in combo:
            key, _, value = item.partition("=")
            OmegaConf.update(job, key, yaml.safe_load(value), merge=False)
        try:
            validate_config(job)
        except ConfigError as exc:
            # The only invalid combination an experiment may ship is a fast >= slow SMA pair,
            # kept on purpose to show a failed job in the summary.
            assert all("must be < strategy.slow" in p for p in exc.problems), exc.problems
            invalid += 1
    assert invalid <= 1


def test_experiments_exist() -> None:
    assert {"sma_grid", "ml_basic_thresholds", "ml_basic_risk"} <= set(EXPERIMENTS)


def test_covering_jobs_compose_every_group_choice_and_every_key_once() -> None:
    # top-level keys may be config groups: every choice is composed
    batch = [[f"fast={f}", f"slow={s}", "mode=backtest"] for f in (5, 10, 20) for s in (50, 100)]
    chosen = covering_jobs(batch)
    assert len(chosen) == 3
    assert {item for job in chosen for item in job} == {item for job in batch for item in job}
    # values of dotted keys compose alike: one job covers the whole grid
    values = [
        [f"strategy.fast={f}", f"strategy.slow={s}"] for f in (5, 10, 15, 20) for s in (40, 60)
    ]
    assert covering_jobs(values) == [values[0]]
    # a group choice still composes once per option, whatever values ride along
    groups, launchers = ("sma_crossover", "ml_basic"), ("basic", "joblib")
    mixed = [[f"strategy={g}", f"+strategy.x={x}", f"hydra/launcher={h}"]
             for g in groups for x in (1, 2) for h in launchers]  # fmt: skip
    chosen = covering_jobs(mixed)
    assert {i for job in chosen for i in job if not i.startswith("+")} == {
        i for job in mixed for i in job if not i.startswith("+")
    }
    assert len(chosen) == 2


def test_local_sweep_tuning_forks_joblib_workers_and_is_idempotent(tmp_path: Path) -> None:
    cfg = _sweep_config(tmp_path)
    tune_local_sweep(cfg)
    tune_local_sweep(cfg)
    # Imported now: composing a config can make Hydra import its plugin modules afresh,
    # and the launch uses the classes of that last import.
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra_plugins.hydra_joblib_launcher import _core

    assert getattr(BasicSweeper.validate_batch_is_legal, "atb_covering", False)
    assert getattr(_core.Parallel, "atb_fork", False)
    # Two workers: the jobs run in forked processes, in order, closures included (the
    # results come back with cloudpickle), and no loky resource tracker is started.
    from joblib.externals.loky.backend import resource_tracker

    tracker = resource_tracker._resource_tracker._pid
    offset = 10
    here = os.getpid()
    ran = _core.Parallel(n_jobs=2, backend="loky")(
        delayed(lambda x: (x + offset, os.getpid()))(i) for i in range(5)
    )
    assert [r for r, _ in ran] == [10, 11, 12, 13, 14]
    assert here not in {pid for _, pid in ran}
    assert resource_tracker._resource_tracker._pid == tracker
    # One worker keeps joblib's own in-process path.
    one = _core.Parallel(n_jobs=1, backend="loky")
    assert type(one._backend).__name__ == "MultiprocessingBackend"
    assert one(delayed(lambda x: (x + offset, os.getpid()))(i) for i in range(2)) == [
        (10, here),
        (11, here),
    ]


@pytest.mark.slow  # forks worker pools four times
def test_forked_workers_freeze_the_launcher_heap_and_a_failing_job_fails_the_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tune_local_sweep(_sweep_config(tmp_path))
    from hydra_plugins.hydra_joblib_launcher import _core

    # The launcher's heap is frozen in the workers (their collections leave it shared
    # copy-on-write), and only there.
    frozen = _core.Parallel(n_jobs=2, backend="loky")(
        delayed(gc.get_freeze_count)() for _ in range(2)
    )
    assert all(count > 0 for count in frozen)
    assert gc.get_freeze_count() == 0

    def job(i: int) -> int:
        if i == 1:
            raise ValueError(f"job {i} broke")
        return i

    with pytest.raises(ValueError, match="job 1 broke"):
        _core.Parallel(n_jobs=2, backend="loky")(delayed(job)(i) for i in range(3))

    def leaves(i: int) -> int:
        if i == 2:
            raise SystemExit(3)
        return i

    # A job that exits is reported as that job's error, not as the launcher exiting.
    with pytest.raises(RuntimeError, match=r"sweep job 2 exited \(code 3\)"):
        _core.Parallel(n_jobs=2, backend="loky")(delayed(leaves)(i) for i in range(3))

    def killed(i: int) -> int:
        if i == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        return i

    # A worker killed mid-job (OOM killer, kill -9) ends the sweep with one line and
    # exit 1; it does not hang.
    with pytest.raises(SystemExit) as stopped:
        _core.Parallel(n_jobs=2, backend="loky")(delayed(killed)(i) for i in range(3))
    assert stopped.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "atb: error: a sweep worker died mid-job (killed, or out of memory?); the sweep"
        " stopped. The jobs reported done above are recorded."
    ]
