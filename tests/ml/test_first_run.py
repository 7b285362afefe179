"""What a new user sees first: the default run and a paper replay with ml_basic trade, and
the summary shows the model's holdout scores next to buy & hold (issue 17)."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from atb.ml.model import DEFAULT_MODEL, load_metadata
from atb.runtime.context import RunContext
from atb.strategies.ml_basic import MlBasic, MlBasicConfig


def test_summary_rows_show_holdout_against_baselines(bundled: pd.DataFrame) -> None:
    s = MlBasic(MlBasicConfig.model_validate({"_target_": "x.Y"}), RunContext())
    s.start()
    s.signals(bundled.loc["2024-01-01":"2024-03-01"])
    rows = dict(s.summary_rows())
    hold = load_metadata(DEFAULT_MODEL)["holdout"]
    assert rows["Model"].startswith(f"{s.model_id} (ridge, fit 2023-01-01..2023-12-31")
    assert rows["Look-ahead"].startswith("none")
    assert rows["Holdout hit rate"] == (
        f"{hold['directional_accuracy'] * 100:.2f} % (coin flip 50.00 %, "
        f"always up {hold['always_up_accuracy'] * 100:.2f} %)"
    )
    assert "no change" in rows["Holdout return MSE"]
    assert "auto: 1 / p90 of training |r|" in rows["Confidence scale"]
    s2 = MlBasic(MlBasicConfig.model_validate({"_target_": "x.Y"}), RunContext())
    s2.start()
    s2.signals(bundled.loc["2023-11-01":"2023-12-01"])
    assert dict(s2.summary_rows())["Look-ahead"].startswith("YES")


def run_atb(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ATB_OUTPUT_DIR": str(tmp_path / "outputs")}
    return subprocess.run(
        [sys.executable, "-m", "atb", f"db.url=sqlite:///{tmp_path / 'atb.db'}", *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip


@pytest.mark.e2e
def test_default_run_trades_and_reports_the_model(tmp_path: Path) -> None:
    proc = run_atb(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    trades = int(re.search(r"^Trades\s+([\d,]+)$", out, re.M).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert trades >= 30, out
    assert re.search(r"^Buy & hold return\s+", out, re.M)
    assert re.search(r"^Holdout hit rate\s+\d+\.\d\d % \(coin flip 50\.00 %", out, re.M)
    assert re.search(r"^Look-ahead\s+none", out, re.M)
    assert "No trades" not in out


@pytest.mark.e2e
def test_paper_replay_trades_within_its_first_1000_bars(tmp_path: Path) -> None:
    proc = run_atb(
        tmp_path, "mode=paper", "exchange=replay", "strategy=ml_basic", "exchange.step=true",
        "live.check_interval=0.001", "live.max_iterations=1000", "health=off",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with sqlite3.connect(tmp_path / "atb.db") as db:
        (bars,) = db.execute("select count(*) from account_history").fetchone()
        (fills,) = db.execute("select count(*) from orders").fetchone()
    assert bars == 1000
    assert fills > 0
