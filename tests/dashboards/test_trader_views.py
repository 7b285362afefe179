"""The view models behind the trader-facing charts, without a browser: downsampling keeps
extremes, candles aggregate per view, labels show only what varies, runs without a metric
sort last, alert storms collapse per rule, the heatmap carries values and a colour bar."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from atb_testkit import dashdb
from atb_testkit.bigdata import random_walk_bars
from bokeh.models import Legend
from bokeh.models.annotations import ColorBar

from atb.dashboards import charts
from atb.dashboards.backtesting import figures
from atb.dashboards.backtesting import model as bt
from atb.dashboards.candles import MAX_CANDLES, Candles
from atb.dashboards.monitoring.history import add_daily
from atb.dashboards.monitoring.status import StatusBoard, strip_html


def test_downsample_keeps_the_extremes_and_both_ends() -> None:
    n = 100_000
    values = np.sin(np.linspace(0, 60, n))
    values[12_345] = -5.0  # the deepest drawdown must survive
    values[77_777] = 9.0
    df = pd.DataFrame({"time": pd.date_range("2024-01-01", periods=n, freq="min"), "v": values})
    out = charts.downsample(df, "v", 4000)
    assert len(out) <= 4000
    assert out["v"].min() == -5.0 and out["v"].max() == 9.0
    assert out["time"].iloc[0] == df["time"].iloc[0]
    assert out["time"].iloc[-1] == df["time"].iloc[-1]
    assert out["time"].is_monotonic_increasing


def test_candles_aggregate_to_the_visible_range() -> None:
    bars = random_walk_bars(200_000).reset_index()
    candles = Candles(bars)
    whole = candles.window()
    assert 0 < len(whole["time"]) <= MAX_CANDLES
    assert max(whole["high"]) == bars["high"].max() and min(whole["low"]) == bars["low"].min()
    # zoomed to a day: one-minute candles again
    start = float(charts.to_ms(bars["time"].iloc[[1000]])[0])
    day = candles.window(start, start + 86_400_000)
    assert len(day["time"]) <= MAX_CANDLES
    assert day["w"][0] < whole["w"][0] / 50


def test_labels_show_only_the_parameters_that_vary() -> None:
    df = pd.DataFrame(
        {
            "strategy": ["sma", "sma", "sma", "ml"],
            "parameters": [
                {"fast": 5, "slow": 50, "size": 1.0},
                {"fast": 10, "slow": 50, "size": 1.0},
                {"fast": 10, "slow": 50},  # an older run without `size`: not a difference
                {"min_confidence": 0.9},
            ],
        }
    )
    assert bt.vary_labels(df) == ["fast=5", "fast=10", "fast=10", "ml"]


def test_runs_without_the_metric_sort_last() -> None:
    df = pd.DataFrame({"id": list("abcd"), "sharpe": [0.5, np.nan, 2.0, np.nan]})
    assert list(bt.sort_runs(df, "Sharpe")["id"]) == ["c", "a", "b", "d"]


def test_alert_storm_collapses_to_one_state_per_rule() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    rows = []
    for i in range(5):
        at = now + timedelta(minutes=2 * i)
        rows.append(dashdb.alert_row("s", "max_drawdown", "firing", "webhook", at))
        rows.append(dashdb.alert_row("s", "max_drawdown", "resolved", "webhook", at))
    last = now + timedelta(hours=1)
    rows.append(dashdb.alert_row("s", "max_drawdown", "firing", "failed:webhook", last))
    rows.append(dashdb.alert_row("s", "stale_data", "firing", "suppressed", last))
    board = StatusBoard()
    board.fold(pd.DataFrame(rows).assign(id=range(1, len(rows) + 1)))
    dd = board.rules["max_drawdown"]
    assert dd.firing and dd.since == last and dd.notifications == 11 and dd.storm == 5
    assert dd.delivery == "failed:webhook"
    assert board.rules["stale_data"].delivery == "suppressed"
    html = strip_html(board, ("running", "ok", "good"), "bar 2026-01-01 12:00 UTC")
    assert html.count("data-rule=") == 2 and 'data-state="firing"' in html


def test_heatmap_has_values_and_a_colour_bar() -> None:
    jobs = pd.DataFrame(
        {
            "job_num": [0, 1, 2, 3],
            "param.fast": [5, 5, 10, 10],
            "param.slow": [50, 100, 50, 100],
            "total_return": [0.1, -0.05, 0.25, np.nan],
            "status": ["finished", "finished", "finished", "failed"],
        }
    )
    fig = figures.sweep_figure(jobs, ["fast", "slow"], "total_return")
    assert any(isinstance(m, ColorBar) for m in fig.right)
    labels = next(r for r in fig.renderers if "text" in r.data_source.data)
    text = labels.data_source.data["text"]
    assert list(text) == ["+10.0%", "-5.0%", "+25.0%", "failed"]


def test_compare_legend_sits_below_the_chart() -> None:
    curve = pd.DataFrame(
        {"time": pd.date_range("2024-01-01", periods=3, freq="h"), "return": [0, 0.1, 0.2]}
    )
    fig = figures.compare_figure({"a": curve, "b": curve}, {"a": "fast=5", "b": "fast=10"})
    assert any(isinstance(m, Legend) for m in fig.below)
    assert not any(isinstance(m, Legend) for m in fig.center)


def test_daily_pnl_folds_new_trades() -> None:
    daily = pd.DataFrame({"day": pd.to_datetime(["2024-01-01"]), "pnl": [10.0], "trades": [2]})
    new = pd.DataFrame(
        {
            "exit_time": pd.to_datetime(["2024-01-01 15:00", "2024-01-02 01:00"]),
            "pnl": [5.0, -3.0],
        }
    )
    out = add_daily(daily, new)
    assert list(out["pnl"]) == [15.0, -3.0] and list(out["trades"]) == [3, 1]


def test_session_views_on_each_database(db_url: str) -> None:
    """The whole-session reads (curve, per-day PnL via date(), status board subquery) and
    their bring-forward run the same on SQLite and PostgreSQL."""
    from atb_testkit import sample

    from atb.dashboards.monitoring.model import MonitoringModel
    from atb.dashboards.readonly import dispose_all, readonly_engine

    expected = sample.seed(db_url)
    dashdb.add_alerts(db_url, sample.PAPER)
    try:
        model = MonitoringModel(readonly_engine(db_url), sample.PAPER)
        model.load()
        views = model.views()
        assert len(views.curve) and views.curve["equity"].iloc[-1] == expected.paper_equity
        assert int(views.daily["trades"].sum()) == expected.paper_trades
        assert views.board.rules["max_drawdown"].firing
        sample.add_trade(db_url, pnl=7.0)
        again = model.views()  # cached, brought forward by the new trade only
        assert int(again.daily["trades"].sum()) == expected.paper_trades + 1
    finally:
        dispose_all()
