"""Sweep test helpers: the `run_sweep` fixture runs `python -m atb -m ...` in a subprocess.

Jobs use a 3-month slice of the bundled data so each backtest takes well under a second;
what a sweep test waits for is process and worker start-up.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHORT_DATA = ["data.start=2024-06-01", "data.end=2024-09-01"]


@dataclass
class SweepResult:
    proc: subprocess.CompletedProcess[str]
    db_path: Path
    multirun_dir: Path

    @property
    def sweep_dir(self) -> Path:
        """The one sweep dir (<multirun>/<date>/<time>) this run made."""
        dirs = [p.parent for p in self.multirun_dir.glob("*/*/multirun.yaml")]
        assert len(dirs) == 1, f"expected one sweep dir, found {dirs}\n{self.output}"
        return dirs[0]

    @property
    def output(self) -> str:
        return f"--- stdout\n{self.proc.stdout}\n--- stderr\n{self.proc.stderr}"

    def rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db_path) as conn:
            return conn.execute(sql, args).fetchall()


RunSweep = Callable[..., SweepResult]


@pytest.fixture
def run_sweep(tmp_path: Path) -> RunSweep:
    def run(
        *overrides: str, env: dict[str, str] | None = None, timeout: float = 240
    ) -> SweepResult:
        db_path = tmp_path / "sweep.db"
        multirun = tmp_path / "multirun"
        full_env = {
            **os.environ,
            "ATB_MULTIRUN_DIR": str(multirun),
            "ATB_OUTPUT_DIR": str(tmp_path / "outputs"),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        full_env.pop("ATB_DB_URL", None)
        proc = subprocess.run(
            [sys.executable, "-m", "atb", "-m", *overrides, f"db.url=sqlite:///{db_path}",
             *SHORT_DATA],
            cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        return SweepResult(proc=proc, db_path=db_path, multirun_dir=multirun)

    return run
