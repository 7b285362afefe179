"""Queries and view models on a seeded database (no browser)."""

from __future__ import annotations

from pathlib import Path

import pytest
from atb_testkit import sample
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from atb.dashboards.backtesting import model as bt
from atb.dashboards.monitoring.model import MonitoringModel, default_session, sessions, sharpe
from atb.dashboards.readonly import DatabaseMissing, readonly_engine, readonly_url


def test_monitoring_kpis_match_the_seed(seeded: tuple[str, sample.Expected]) -> None:
    url, exp = seeded
    model = MonitoringModel(readonly_engine(url), sample.PAPER)
    snap = model.load()
    k = snap.kpis
    assert k.balance == pytest.approx(exp.paper_balance)
    assert k.equity == pytest.approx(exp.paper_equity)
    assert k.trades == exp.paper_trades
    assert k.win_rate == pytest.approx(exp.paper_wins / exp.paper_trades)
    assert k.max_drawdown == pytest.approx(exp.paper_max_drawdown)
    assert k.open_positions == 1
    assert k.exposure == pytest.approx(0.5 * 42_025.0)
    # a few days of hourly bars: an annualised Sharpe would be noise, so none is shown
    assert k.sharpe is None and k.sharpe_note.startswith("n/a (") and "of 30 d" in k.sharpe_note
    assert list(snap.positions["stop_loss"]) == [41_000.0]
    assert len(snap.trades) == min(50, exp.paper_trades)
    assert k.health == "running"


def test_sessions_never_mix_modes(seeded: tuple[str, sample.Expected]) -> None:
    url, exp = seeded
    engine = readonly_engine(url)
    assert {r["id"] for r in sessions(engine, "live")} == {sample.LIVE}
    assert {r["mode"] for r in sessions(engine, "backtest")} == {"backtest"}
    live = MonitoringModel(engine, sample.LIVE).load()
    assert live.kpis.trades == 3
    assert live.kpis.balance == pytest.approx(exp.live_balance)
    assert default_session(sessions(engine, None))["id"] == sample.PAPER


def test_poll_streams_only_new_rows(seeded: tuple[str, sample.Expected], tmp_path: Path) -> None:
    url, exp = seeded
    model = MonitoringModel(readonly_engine(url), sample.PAPER)
    model.load()
    assert len(model.poll().trades) == 0
    sample.add_trade(url, pnl=123.0)
    up = model.poll()
    assert list(up.trades["pnl"]) == [123.0]
    assert up.kpis.trades == exp.paper_trades + 1
    assert up.kpis.win_rate == pytest.approx((exp.paper_wins + 1) / (exp.paper_trades + 1))
    # A live trade never reaches the paper session's stream.
    sample.add_trade(url, run_id=sample.LIVE, mode="live", pnl=5.0)
    assert len(model.poll().trades) == 0


def test_severity_filter(seeded: tuple[str, sample.Expected]) -> None:
    url, _ = seeded
    model = MonitoringModel(readonly_engine(url), sample.PAPER, severities=["ERROR", "CRITICAL"])
    snap = model.load()
    assert set(snap.events["severity"]) == {"ERROR", "CRITICAL"}
    events = model.set_severities(["WARNING"])
    assert set(events["severity"]) == {"WARNING"}
    assert snap.kpis.errors_recent == 16 and snap.kpis.warnings_recent == 8


def test_sharpe_formula() -> None:
    assert sharpe(1, 0.1, 0.01, 3600) is None
    r = [0.01, -0.005, 0.02]
    n, s, ss = len(r), sum(r), sum(x * x for x in r)
    import statistics

    expected = statistics.mean(r) / statistics.stdev(r) * (365 * 24) ** 0.5
    assert sharpe(n, s, ss, 3600) == pytest.approx(expected)


def test_readonly_engine_refuses_writes(
    seeded: tuple[str, sample.Expected], tmp_path: Path
) -> None:
    url, _ = seeded
    engine = readonly_engine(url)
    assert "mode=ro" in str(readonly_url(url))
    with engine.connect() as conn, pytest.raises(OperationalError):
        conn.execute(text("DELETE FROM trades"))
    with pytest.raises(DatabaseMissing):
        readonly_engine(f"sqlite:///{tmp_path / 'absent.db'}")
    assert not (tmp_path / "absent.db").exists()


def test_postgres_sessions_are_read_only() -> None:
    from atb.dashboards.readonly import connect_args_for
    from atb.db.url import parse_url

    args = connect_args_for(parse_url("postgresql://u:p@localhost:1/x"))
    assert args["options"] == "-c default_transaction_read_only=on"


def test_backtest_registry_filters_and_metrics(seeded: tuple[str, sample.Expected]) -> None:
    url, _ = seeded
    with readonly_engine(url).connect() as conn:
        runs = bt.run_registry(conn)
        assert list(runs["id"]) == [sample.BACKTEST_B, sample.BACKTEST_A]  # newest first
        assert runs.loc[runs["id"] == sample.BACKTEST_A, "total_return"].item() == 0.12
        assert runs.loc[runs["id"] == sample.BACKTEST_A, "params"].item() == "fast=5, slow=50"
        assert len(bt.run_registry(conn, text="fast=10")) == 1
        assert len(bt.run_registry(conn, strategy="nope")) == 0
        assert bt.registry_options(conn)["sweep_id"] == [sample.SWEEP]
        curve = bt.equity_curve(conn, sample.BACKTEST_A)
        assert len(curve) == 100 and curve["return"].iloc[0] == 0
        trades = bt.run_trades(conn, sample.BACKTEST_A)
        assert len(trades) == 12 and trades["cum_pnl"].iloc[-1] == pytest.approx(
            trades["pnl"].sum()
        )
        # The paper session's rows are not a backtest's.
        assert len(bt.equity_curve(conn, sample.PAPER)) == 0
        jobs, params = bt.sweep_table(conn, sample.SWEEP)
        assert list(jobs["job_num"]) == [0, 1]
        assert params[0] == "fast"  # the varying parameter first
    table, curves = bt.compare(readonly_engine(url), [sample.BACKTEST_A, sample.BACKTEST_B])
    assert set(table["id"]) == {sample.BACKTEST_A, sample.BACKTEST_B}
    assert all(len(c) == 100 for c in curves.values())


def test_csv_exports(logs_dir: Path) -> None:
    files = bt.list_csv_exports(logs_dir)
    assert [f.name for f in files] == ["trades.csv"]
    trades = bt.read_trade_csv(files[0])
    assert trades["cum_pnl"].iloc[-1] == pytest.approx(0.3)
    bad = logs_dir / "other.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="not a trade export"):
        bt.read_trade_csv(bad)
    assert bt.list_csv_exports(None) == []
