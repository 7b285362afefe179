"""`python -m atb -m ...` end to end: the default (joblib) launcher with 2 workers on one
SQLite file, a failing combination recorded with its reason, the ranking, progress lines."""

from __future__ import annotations

import csv
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sweep_helpers import RunSweep, run_sweep

__all__ = ["run_sweep"]  # the fixture, used by name below

pytestmark = pytest.mark.e2e


def test_sma_sweep_records_every_job_and_ranks_them(run_sweep: RunSweep) -> None:
    result = run_sweep(
        "mode=backtest", "strategy=sma_crossover", "strategy.fast=5,50", "strategy.slow=20,100",
        env={"ATB_SWEEP_JOBS": "2"},
    )  # fmt: skip
    assert result.proc.returncode == 0, result.output
    sweep_id = str(result.sweep_dir)

    rows = result.rows(
        "select id, job_num, status, error, parameters, metrics, overrides from runs"
        " where sweep_id = ? order by job_num",
        sweep_id,
    )
    assert [r[1] for r in rows] == [0, 1, 2, 3], result.output
    by_job = {r[1]: r for r in rows}
    # Jobs are numbered in Hydra's order: fast varies slowest. (50, 20) is the invalid one.
    failed = by_job[2]
    assert failed[2] == "failed"
    assert "strategy.fast" in failed[3] and "must be < strategy.slow" in failed[3]
    assert json.loads(failed[4])["strategy.fast"] == 50
    assert "strategy.slow=20" in json.loads(failed[6])
    for job, (fast, slow) in {0: (5, 20), 1: (5, 100), 3: (50, 100)}.items():
        run_id, _, status, error, params, _, _ = by_job[job]
        assert (status, error) == ("finished", None), result.output
        parameters = json.loads(params)
        assert (parameters["fast"], parameters["slow"]) == (fast, slow)

    # Two workers wrote full runs into one SQLite file at once: nothing lost or torn.
    assert result.rows("pragma integrity_check") == [("ok",)]
    for job in (0, 1, 3):
        run_id, metrics = by_job[job][0], json.loads(by_job[job][5])
        trades = result.rows("select count(*) from trades where run_id = ?", run_id)[0][0]
        assert trades == metrics["num_trades"] > 0
        # Each job's equity curve: compact columns of the run (run_series), one per bar.
        history = result.rows(
            "select length from run_series where run_id = ? and series = 'account'"
            " and \"column\" = 'equity'",
            run_id,
        )
        assert history[0][0] > 0

    # The ranking: by Sharpe, highest first, the failed job last without a rank.
    sharpe = {job: json.loads(by_job[job][5])["sharpe"] for job in (0, 1, 3)}
    expected = sorted(sharpe, key=lambda j: -sharpe[j])
    (ranking_json,) = result.rows("select ranking from sweeps where id = ?", sweep_id)[0]
    ranking = json.loads(ranking_json)
    assert [r["job_num"] for r in ranking] == [*expected, 2]
    assert [r["rank"] for r in ranking] == [1, 2, 3, None]
    assert ranking[-1]["error"] == failed[3]
    with open(result.sweep_dir / "summary.csv", newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [int(r["job_num"]) for r in table] == [*expected, 2]
    assert float(table[0]["sharpe"]) == pytest.approx(sharpe[expected[0]])

    printed = result.proc.stdout[result.proc.stdout.index("ranked by sharpe") :].splitlines()[2:6]
    assert [int(line.split()[1]) for line in printed] == [*expected, 2]
    assert "strategy.fast=50 strategy.slow=20" in printed[-1]

    # Progress while it ran, from the workers.
    assert "[sweep] 4 jobs" in result.proc.stderr
    assert "[sweep] 4/4 jobs done, 1 failed" in result.proc.stderr, result.output


def test_experiment_sweep_with_an_overridden_axis(run_sweep: RunSweep) -> None:
    """A `conf/experiment` grid narrowed from the command line, ranked by another metric."""
    result = run_sweep(
        "+experiment=sma_grid", "strategy.fast=10", "strategy.slow=50,100", "sweep.metric=calmar",
        "sweep.descending=false", "hydra/launcher=basic",
    )  # fmt: skip
    assert result.proc.returncode == 0, result.output
    rows = result.rows("select job_num, status, metrics from runs order by job_num")
    assert [(r[0], r[1]) for r in rows] == [(0, "finished"), (1, "finished")]
    calmar = {r[0]: json.loads(r[2])["calmar"] for r in rows}
    ranking = json.loads(result.rows("select ranking from sweeps")[0][0])
    assert [r["job_num"] for r in ranking] == sorted(calmar, key=lambda j: calmar[j])
    assert "ranked by calmar (low first)" in result.proc.stdout


def _sweep_until_first_job(tmp_path: Path) -> tuple[subprocess.Popen[str], list[str]]:
    """A 16-job sweep on 2 local workers, in its own process group (Ctrl-C reaches all of
    it), read up to its first finished job."""
    env = {
        **os.environ,
        "ATB_MULTIRUN_DIR": str(tmp_path / "multirun"),
        "ATB_OUTPUT_DIR": str(tmp_path / "outputs"),
        "ATB_SWEEP_JOBS": "2",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("ATB_DB_URL", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "atb", "-m", "strategy=sma_crossover",
         "strategy.fast=5,6,7,8,9,10,11,12", "strategy.slow=40,60", "backtest.summary=false",
         f"db.url=sqlite:///{tmp_path / 'sweep.db'}"],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's
    )  # fmt: skip
    assert proc.stderr is not None
    lines: list[str] = []
    for line in proc.stderr:
        lines.append(line.rstrip("\n"))
        if "1/16 jobs done" in line:
            return proc, lines
    raise AssertionError("\n".join(lines[-20:]))


def _finish(proc: subprocess.Popen[str], lines: list[str]) -> list[str]:
    try:
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return lines + rest.splitlines()


def _recorded(tmp_path: Path, lines: list[str]) -> tuple[int, int, int, int]:
    """(jobs reported done, of them finished, runs finished, runs recorded). A job stopped
    by Ctrl-C is reported done too, as failed."""
    done = [line for line in lines if line.startswith("[sweep] ") and " jobs done" in line]
    done_finished = sum(1 for line in done if ": finished " in line)
    with sqlite3.connect(tmp_path / "sweep.db") as conn:
        finished, total = conn.execute(
            "select sum(status = 'finished'), count(*) from runs"
        ).fetchone()
    return len(done), done_finished, finished, total


def test_a_worker_killed_mid_sweep_ends_it_with_one_line_and_keeps_the_finished_runs(
    tmp_path: Path,
) -> None:
    """kill -9 of one of the 2 local workers (what the OOM killer does): the launcher must
    not wait for it forever, and the other worker must not linger."""
    proc, lines = _sweep_until_first_job(tmp_path)
    workers = _children(proc.pid)
    assert len(workers) == 2, lines
    os.kill(workers[-1], signal.SIGKILL)
    lines = _finish(proc, lines)
    assert proc.returncode == 1, "\n".join(lines[-20:])
    assert lines[-1] == (
        "atb: error: a sweep worker died mid-job (killed, or out of memory?); the sweep"
        " stopped. The jobs reported done above are recorded."
    )
    assert not any("Traceback" in line for line in lines)
    assert all(not _alive(pid) for pid in workers)
    _, done_finished, finished, _ = _recorded(tmp_path, lines)
    assert finished >= done_finished >= 1


def test_ctrl_c_stops_the_running_jobs_starts_no_more_and_exits_130(tmp_path: Path) -> None:
    proc, lines = _sweep_until_first_job(tmp_path)
    workers = _children(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    lines = _finish(proc, lines)
    assert proc.returncode == 130, "\n".join(lines[-20:])
    assert lines[-1] == "atb: interrupted"
    assert not any("Traceback" in line for line in lines)
    assert all(not _alive(pid) for pid in workers)
    # The jobs running at Ctrl-C recorded themselves; nothing queued behind them started.
    done, done_finished, finished, total = _recorded(tmp_path, lines)
    assert finished >= done_finished >= 1
    assert total <= done + 2 < 16


def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
