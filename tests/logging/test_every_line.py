"""Real runs with JSON logs: stdout is only JSON objects, and every line carries the run's
`session_id` and the `component` that wrote it (issue 15: 0 of 85 lines did)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e  # runs the CLI in a subprocess


def run_atb(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    full_env = {
        **os.environ,
        "ATB_OUTPUT_DIR": str(tmp_path / "outputs"),
        "ATB_MULTIRUN_DIR": str(tmp_path / "multirun"),
        **(env or {}),
    }
    for key in ("LOG_JSON", "ENV"):
        if env is None or key not in env:
            full_env.pop(key, None)
    proc = subprocess.run(
        [sys.executable, "-m", "atb", *args, f"db.url=sqlite:///{tmp_path / 'atb.db'}"],
        capture_output=True, text=True, timeout=300, env=full_env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def json_lines(stdout: str) -> list[dict[str, Any]]:
    lines = stdout.splitlines()
    assert lines, "no output on stdout"
    records = []
    for n, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"stdout line {n} is not JSON: {line[:200]!r}")
        assert isinstance(record, dict), line
        records.append(record)
    return records


def assert_context_on_every_line(records: list[dict[str, Any]]) -> set[str]:
    run_ids = {r.get("run_id") for r in records if r.get("run_id")}
    assert len(run_ids) >= 1
    for r in records:
        assert r.get("component"), f"no component: {r}"
        assert r.get("session_id"), f"no session_id: {r}"
        assert r["session_id"] == r.get("run_id", r["session_id"])
    return {r["component"] for r in records}


def test_paper_session_json_logs(tmp_path: Path) -> None:
    out = run_atb(
        tmp_path, "mode=paper", "exchange=replay", "logging=json", "health.port=0",
        "live.max_iterations=5", "live.check_interval=0.05",
    )  # fmt: skip
    records = json_lines(out)
    components = assert_context_on_every_line(records)
    # the loop, the health server's thread, the alert router and the feed all wrote lines
    assert {"engine", "health", "alerts", "exchange"} <= components, components
    assert len({r["session_id"] for r in records}) == 1


def test_backtest_json_logs_keep_the_summary_off_stdout(tmp_path: Path) -> None:
    out = run_atb(tmp_path, "strategy=sma_crossover", env={"LOG_JSON": "1"})
    records = json_lines(out)  # the 26-line summary table went to stdout before
    components = assert_context_on_every_line(records)
    assert "engine" in components
    assert any(r.get("event") == "backtest_end" for r in records)


def test_env_production_backtest_stdout_is_json(tmp_path: Path) -> None:
    json_lines(run_atb(tmp_path, "strategy=sma_crossover", env={"ENV": "production"}))


def test_sweep_with_json_logs_prints_its_ranking_to_stderr(tmp_path: Path) -> None:
    out = run_atb(tmp_path, "-m", "strategy=sma_crossover", "strategy.fast=5,10", "logging=json")
    records = json_lines(out)
    assert_context_on_every_line(records)
    assert len({r["session_id"] for r in records}) == 2  # one per job
