"""A user's own config dir and strategy module, outside the atb package (the example in
docs/examples/own_strategy, exactly as its README runs it). The wheel-install test runs
the same commands against the installed wheel."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from deploy_helpers import ROOT, clean_env

EXAMPLE = ROOT / "docs" / "examples" / "own_strategy"


@pytest.mark.e2e
@pytest.mark.parametrize(
    "args",
    [
        ["--config-dir", "myconf", "strategy=momentum", "strategy.lookback=48"],
        ["hydra.searchpath=[file://myconf]", "strategy=momentum"],
    ],
)
def test_own_strategy_through_config_dir_or_searchpath(tmp_path: Path, args: list[str]) -> None:
    work = tmp_path / "own_strategy"
    shutil.copytree(EXAMPLE, work)
    proc = subprocess.run(
        [sys.executable, "-m", "atb", *args], cwd=work, capture_output=True, text=True,
        timeout=300, env=clean_env(ATB_OUTPUT_DIR=str(tmp_path / "outputs")),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "strategy=momentum" in out and "backtest_end" in out
    lookback = 48 if "strategy.lookback=48" in args else 24
    resolved = next((tmp_path / "outputs").rglob("config.yaml")).read_text()
    assert f"lookback: {lookback}" in resolved


@pytest.mark.e2e
def test_unknown_user_strategy_is_one_config_error(tmp_path: Path) -> None:
    work = tmp_path / "own_strategy"
    shutil.copytree(EXAMPLE, work)
    proc = subprocess.run(
        [sys.executable, "-m", "atb", "--config-dir", "myconf", "strategy=momentun"],
        cwd=work, capture_output=True, text=True, timeout=300,
        env=clean_env(ATB_OUTPUT_DIR=str(tmp_path / "outputs")),
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "momentun" in proc.stderr
