"""The README's commands, run for real in a subprocess with a temp DB and output dir."""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from core_helpers import RunAtb

pytestmark = pytest.mark.e2e


def test_default_run_succeeds_and_writes_the_database(atb_run: RunAtb, tmp_path: Path) -> None:
    proc = atb_run()
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "atb.db").exists()
    assert list((tmp_path / "outputs").glob("*/*/.hydra/config.yaml"))


def test_unknown_key_exits_2(atb_run: RunAtb) -> None:
    proc = atb_run("foo=1")
    assert proc.returncode == 2
    assert "config error:" in proc.stderr
    assert "foo" in proc.stderr


def test_appended_unknown_key_exits_2_naming_it(atb_run: RunAtb) -> None:
    proc = atb_run("+strategy.colour=red", "strategy=sma_crossover")
    assert proc.returncode == 2
    assert "config error: strategy.colour: unknown key" in proc.stderr


def test_wrong_type_exits_2_naming_the_key(atb_run: RunAtb) -> None:
    proc = atb_run("strategy=sma_crossover", "strategy.fast=abc")
    assert proc.returncode == 2
    assert "config error: strategy.fast:" in proc.stderr


def test_cross_field_check_names_the_key(atb_run: RunAtb) -> None:
    proc = atb_run("strategy=sma_crossover", "strategy.fast=60", "strategy.slow=50")
    assert proc.returncode == 2
    assert "config error: strategy.fast: must be < strategy.slow" in proc.stderr


def test_missing_group_option_exits_2(atb_run: RunAtb) -> None:
    proc = atb_run("strategy=nope")
    assert proc.returncode == 2
    assert "strategy/nope" in proc.stderr
    assert "sma_crossover" in proc.stderr  # the available options are listed


def test_dependency_cycle_exits_2_naming_the_nodes(atb_run: RunAtb) -> None:
    proc = atb_run("db.needs=[backtest]")
    assert proc.returncode == 2
    assert "dependency cycle" in proc.stderr
    assert "backtest" in proc.stderr and "db" in proc.stderr


def test_cfg_job_prints_the_run_graph(atb_run: RunAtb) -> None:
    proc = atb_run("--cfg", "job", "strategy=sma_crossover", db=False)
    assert proc.returncode == 0, proc.stderr
    assert "_target_: atb.engine.backtest.Backtest" in proc.stdout
    assert "name: sma_crossover" in proc.stdout


def test_help_lists_groups_and_hydra_help_works(atb_run: RunAtb) -> None:
    proc = atb_run("--help", db=False)
    assert proc.returncode == 0
    assert "strategy: ml_basic, sma_crossover" in proc.stdout
    hydra_help = atb_run("--hydra-help", db=False)
    assert hydra_help.returncode == 0
    assert "Hydra" in hydra_help.stdout


def test_secret_on_the_command_line_never_reaches_output_files(
    atb_run: RunAtb, tmp_path: Path
) -> None:
    key, secret = secrets.token_hex(16), secrets.token_urlsafe(24)
    proc = atb_run(
        "strategy=sma_crossover", f"exchange.api_key={key}", f"exchange.api_secret={secret}"
    )
    assert proc.returncode == 0, proc.stderr
    written = [p for p in (tmp_path / "outputs").rglob("*") if p.is_file()]
    assert any(p.name == "overrides.yaml" for p in written)
    for path in written:
        text = path.read_text(errors="replace")
        assert key not in text and secret not in text, path
    assert key not in proc.stdout + proc.stderr
    assert secret not in proc.stdout + proc.stderr


def test_atb_console_script_help(atb_run: RunAtb) -> None:
    proc = atb_run("--help", module="atb.cli", db=False)
    assert proc.returncode == 0
    for command in ("dashboards", "live-health", "tests", "db"):
        assert command in proc.stdout
