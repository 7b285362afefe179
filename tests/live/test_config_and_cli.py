"""Live is opt-in and checked before any node starts; the seed's `atb live` commands run."""

from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from live_helpers import Session

from atb.__main__ import CONFIG_DIR
from atb.config.validate import validate_config
from atb.engine.live_cli import to_overrides
from atb.runtime.errors import ConfigError


@pytest.fixture
def problems(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    for var in ("BINANCE_API_KEY", "BINANCE_API_SECRET", "KRAKEN_API_KEY", "KRAKEN_API_SECRET"):
        monkeypatch.delenv(var, raising=False)
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):

        def check(*overrides: str) -> list[str]:
            try:
                validate_config(compose("config", overrides=list(overrides)))
            except ConfigError as exc:
                return exc.problems
            return []

        yield check
    GlobalHydra.instance().clear()


def test_paper_needs_no_keys_and_runs_the_live_node(problems) -> None:  # type: ignore[no-untyped-def]
    assert problems("mode=paper") == []
    assert problems("mode=paper", "exchange=replay") == []


def test_an_endless_interval_is_a_config_error_not_a_run_time_one(problems) -> None:  # type: ignore[no-untyped-def]
    found = problems("mode=paper", "live.check_interval=inf", "live.cooldown=nan")
    assert any(p.startswith("live.check_interval: ") and "finite" in p for p in found), found
    assert any(p.startswith("live.cooldown: ") for p in found), found


def test_paper_and_live_share_one_live_node_and_differ_only_where_they_must() -> None:
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            paper = compose("config", overrides=["mode=paper"])
            live = compose("config", overrides=["mode=live"])
    finally:
        GlobalHydra.instance().clear()
    differs = {k for k in paper.live if paper.live[k] != live.live.get(k)}
    assert differs == {"trading"} and set(live.live) - set(paper.live) == {"i_understand_the_risks"}
    assert (paper.mode, live.mode, live.exchange.trading) == ("paper", "live", True)
    assert paper.runner.main == live.runner.main == "live"


def test_live_without_acknowledgement_is_a_config_error(problems) -> None:  # type: ignore[no-untyped-def]
    found = problems("mode=live")
    assert any(
        p.startswith("live.i_understand_the_risks: mode=live places real orders") for p in found
    ), found


def test_live_without_keys_names_the_env_vars(problems, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    found = problems("mode=live", "live.i_understand_the_risks=true")
    assert found == [
        "exchange.api_key: live trading needs API keys: set BINANCE_API_KEY and "
        "BINANCE_API_SECRET (or exchange.api_key / exchange.api_secret)"
    ]
    # Any ccxt exchange reads its own variables, never Binance's.
    monkeypatch.setenv("BINANCE_API_KEY", "k" * 16)
    monkeypatch.setenv("BINANCE_API_SECRET", "s" * 16)
    assert problems("mode=live", "live.i_understand_the_risks=true") == []
    kraken = problems("mode=live", "live.i_understand_the_risks=true", "exchange.id=kraken")
    assert kraken and "KRAKEN_API_KEY" in kraken[0]
    assert problems("mode=paper", "exchange.id=nosuchexchange") == [
        "exchange.id: ccxt has no exchange 'nosuchexchange'"
    ]


def test_live_refuses_the_offline_replay_and_shorts(problems, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    found = problems("mode=live", "live.i_understand_the_risks=true", "exchange=replay")
    assert any(p.startswith("exchange.trading: exchange=replay is offline") for p in found)
    monkeypatch.setenv("BINANCE_API_KEY", "k" * 16)
    monkeypatch.setenv("BINANCE_API_SECRET", "s" * 16)
    found = problems("mode=live", "live.i_understand_the_risks=true", "live.allow_shorts=true")
    assert found == ["live.allow_shorts: live trading is spot only: shorts are off"]


def test_seed_flags_map_onto_overrides() -> None:
    assert to_overrides(
        "live",
        [
            "ml_basic",
            "--symbol",
            "BTCUSDT",
            "--timeframe",
            "1h",
            "--paper-trading",
            "--check-interval",
            "60",
            "x.y=1",
        ],
    ) == [
        "strategy=ml_basic",
        "mode=paper",
        "symbol=BTCUSDT",
        "timeframe=1h",
        "live.check_interval=60",
        "x.y=1",
    ]
    assert to_overrides(
        "live-health",
        [
            "--",
            "ml_basic",
            "--live-trading",
            "--i-understand-the-risks",
            "--balance",
            "500",
            "--max-position",
            "0.2",
        ],
    ) == [
        "strategy=ml_basic",
        "mode=live",
        "live.i_understand_the_risks=true",
        "live.initial_balance=500",
        "live.max_position=0.2",
        "health=on",
    ]


@pytest.mark.e2e
def test_live_without_acknowledgement_exits_2_before_any_node_starts(session: Session) -> None:
    proc = session.run("mode=live")
    assert proc.returncode == 2
    assert "config error: live.i_understand_the_risks" in proc.stderr
    assert not session.db_path.exists()  # not even the database was opened


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.e2e
def test_atb_live_cli_runs_an_offline_replay_session(session: Session) -> None:
    atb = [sys.executable, "-m", "atb.cli"]
    proc = session.run(
        "live",
        "ml_basic",
        "--paper-trading",
        "--check-interval",
        "0.05",
        "exchange=replay",
        "exchange.step=true",
        "live.max_iterations=3",
        "health=off",
        argv0=atb,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ((mode, status, source),) = session.query("select mode, status, data_source from runs")
    assert (mode, status) == ("paper", "finished") and source.startswith("replay")
    assert session.query("select count(*) from account_history")[0][0] == 3
    assert session.query("select count(*) from predictions")[0][0] == 3


@pytest.mark.e2e
def test_atb_live_health_runs_the_engine_with_the_health_server(
    session: Session, tmp_path: Path
) -> None:
    atb = [sys.executable, "-m", "atb.cli"]
    proc = session.run(
        "live-health",
        "--",
        "sma_crossover",
        "--paper-trading",
        "--check-interval",
        "0.05",
        "exchange=replay",
        "exchange.step=true",
        "live.max_iterations=3",
        env={"PORT": str(_free_port())},
        argv0=atb,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert session.query("select mode, status from runs") == [("paper", "finished")]
