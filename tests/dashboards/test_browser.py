"""The dashboards in Debian's Chromium (Playwright, no browser download).

Each page loads with no console errors and no request leaving the dashboard host, shows
the seeded KPI values; the monitoring page streams a trade written after it loaded; the
backtesting comparison view renders. Screenshots go to test-artifacts/dashboards/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from atb_testkit import sample

from atb.dashboards.browser import chromium_path, new_page
from atb.dashboards.discovery import named_pages
from atb.dashboards.server import DashboardServer
from atb.dashboards.settings import DashboardSettings

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None, reason="chromium not installed (apt install chromium)"
    ),
]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboards"
READY = {
    "monitoring": "#kpi-balance[data-filled]",
    "backtesting": "#kpi-total_return[data-filled]",
    "market_prediction": "#kpi-accuracy[data-filled]",
}
# Rendered after first paint: the page is complete when these are on screen (HTML text;
# chart titles are drawn on canvas and cannot be matched).
COMPLETE = {
    "monitoring": "text=Recent trades",
    "backtesting": "text=Trades (12)",
    "market_prediction": "text=Feature diagnostics",
}


@pytest.fixture(scope="module")
def server(
    seeded: tuple[str, sample.Expected], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DashboardServer]:
    url, _ = seeded
    logs = tmp_path_factory.mktemp("logs")
    (logs / "trades.csv").write_text("trade_no,exit_time,pnl\n1,2024-01-01T01:00:00,5.0\n")
    settings = DashboardSettings(db_url=url, update_interval=0.5, logs_dir=logs)
    srv = DashboardServer(named_pages(READY, settings), port=0)
    srv.start()
    yield srv
    srv.stop()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def kpi(page: Any, key: str) -> str:
    return str(page.locator(f"#kpi-{key} .value").inner_text()).strip()


@pytest.mark.parametrize("name", list(READY))
def test_page_loads_clean_and_local(name: str, server: DashboardServer, browser: Any) -> None:
    page, log = new_page(browser)
    page.goto(server.app_url(name))
    page.wait_for_selector(READY[name], state="visible", timeout=30_000)
    page.wait_for_selector(COMPLETE[name], timeout=30_000)
    page.wait_for_timeout(500)
    shot(page, name)
    assert log.errors() == [], log.console
    assert log.foreign_hosts({"127.0.0.1"}) == []
    page.close()


def test_kpis_show_seeded_values(
    server: DashboardServer, browser: Any, seeded: tuple[str, sample.Expected]
) -> None:
    _, exp = seeded
    page, _log = new_page(browser)
    page.goto(server.app_url("monitoring"))
    page.wait_for_selector(READY["monitoring"], timeout=30_000)
    assert kpi(page, "balance") == f"{exp.paper_balance:,.2f}"
    assert kpi(page, "equity") == f"{exp.paper_equity:,.2f}"
    assert kpi(page, "trades") == str(exp.paper_trades)
    assert kpi(page, "win_rate") == "50.00%"
    assert kpi(page, "open_positions") == "1"
    page.goto(server.app_url("backtesting"))
    page.wait_for_selector(READY["backtesting"], timeout=30_000)
    assert kpi(page, "runs") == "2"
    assert kpi(page, "total_return") == "+5.00%"  # the newest run is selected
    assert kpi(page, "sharpe") == "0.70"
    page.goto(server.app_url("market_prediction"))
    page.wait_for_selector(READY["market_prediction"], timeout=30_000)
    assert kpi(page, "predictions") == "300"
    # the shipped model's holdout scores (its metadata) next to the naive baselines
    from atb.ml.model import DEFAULT_MODEL, load_metadata

    hold = load_metadata(DEFAULT_MODEL)["holdout"]
    assert kpi(page, "holdout") == f"{hold['directional_accuracy'] * 100:.2f}%"
    page.wait_for_selector("text=Model vs naive baselines", timeout=30_000)
    page.wait_for_selector(
        f"text=always up {hold['always_up_accuracy'] * 100:.2f} %", timeout=30_000
    )
    page.close()


def test_monitoring_streams_a_new_trade(
    server: DashboardServer, browser: Any, seeded: tuple[str, sample.Expected]
) -> None:
    url, exp = seeded
    page, log = new_page(browser)
    page.goto(server.app_url("monitoring"))
    page.wait_for_selector(COMPLETE["monitoring"], timeout=30_000)
    assert page.locator("text=4,321.99").count() == 0
    sample.add_trade(url, pnl=4321.99)
    page.wait_for_selector("text=4,321.99", timeout=15_000)
    page.wait_for_function("n => document.querySelector('body') !== null", arg=exp.paper_trades + 1)
    page.locator(f"#kpi-trades .value:text-is('{exp.paper_trades + 1}')").wait_for(timeout=15_000)
    shot(page, "monitoring-new-trade")
    assert log.errors() == []
    page.close()


def test_backtesting_comparison_renders(server: DashboardServer, browser: Any) -> None:
    page, log = new_page(browser)
    page.goto(server.app_url("backtesting"))
    page.wait_for_selector(COMPLETE["backtesting"], timeout=30_000)
    page.get_by_text("Compare", exact=True).click()
    page.wait_for_selector("#compare-view", state="attached", timeout=30_000)
    page.wait_for_selector("text=Profit factor", timeout=30_000)  # the side-by-side table
    # the two sweep jobs are told apart by the one parameter that varies
    assert page.locator("text=/fast=5 ·/").count() >= 1
    assert page.locator("text=/fast=10 ·/").count() >= 1
    page.get_by_text("Sweeps", exact=True).click()
    page.wait_for_selector("text=Job", timeout=30_000)  # the jobs-by-parameter table
    shot(page, "backtesting-sweep")
    page.get_by_text("Compare", exact=True).click()
    page.wait_for_timeout(300)
    shot(page, "backtesting-compare")
    assert log.errors() == []
    page.close()
