"""The monitoring and backtesting pages as a trader reads them, in Debian's Chromium.

One database of real runs (atb_testkit.dashdb: a sweep with a failed job, a zero-trade
run, a 100 000-bar run) plus a real paper session replaying candles while the pages are
open, with alert rows as the alert router journals them. The tests check what a person
checks: axis ticks readable (no `e+`, thousands separators, percent axes), the alert strip
shows the firing rule with its failed delivery, the candle chart has trade markers, a new
run appears without a reload, a zero-trade run says why. Screenshots at 1440×900 go to
test-artifacts/screenshots/ (printed).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from atb_testkit import dashdb

from atb.dashboards.browser import axis_labels, chromium_path, new_page, source_rows
from atb.dashboards.discovery import named_pages
from atb.dashboards.readonly import dispose_all
from atb.dashboards.server import DashboardServer
from atb.dashboards.settings import DashboardSettings

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None, reason="chromium not installed (apt install chromium)"
    ),
]

SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
WIDTH, HEIGHT = 1440, 900


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> dashdb.DashDb:
    return dashdb.build(tmp_path_factory.mktemp("trader"))


@pytest.fixture(scope="module")
def paper(db: dashdb.DashDb, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real paper session (bundled candles replayed at 10 bars/s) writing as we watch."""
    tmp = tmp_path_factory.mktemp("paper")
    env = {**os.environ, "ATB_OUTPUT_DIR": str(tmp / "outputs")}
    env.pop("LOG_JSON", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "atb", "mode=paper", "exchange=replay", "exchange.speed=36000",
         "live.check_interval=0.2", "live.resume=false", "strategy.min_confidence=0.05",
         "health=off", "alerts=off",
         f"db.url={db.url}"],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        path = db.url.removeprefix("sqlite:///")
        run_id = wait_for_row(
            path,
            "SELECT r.id FROM runs r JOIN trades t ON t.run_id = r.id "
            "WHERE r.mode = 'paper' AND r.id != 'paper-session-0001' LIMIT 1",
        )
        dashdb.add_alerts(db.url, run_id)
        yield run_id
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def wait_for_row(path: str, sql: str, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(path) as conn:
            row = conn.execute(sql).fetchone()
        if row:
            return str(row[0])
        time.sleep(0.3)
    pytest.fail(f"no row for {sql!r} within {timeout:.0f} s")


@pytest.fixture(scope="module")
def server(db: dashdb.DashDb) -> Iterator[DashboardServer]:
    settings = DashboardSettings(db_url=db.url, update_interval=0.5)
    srv = DashboardServer(named_pages(("monitoring", "backtesting"), settings), port=0)
    srv.start()
    yield srv
    srv.stop()
    dispose_all()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    print(f"\n[screenshot] {path}")


def assert_axes_readable(page: Any) -> list[dict[str, Any]]:
    """No tick in scientific notation; prices with separators; drawdown in percent."""
    axes = axis_labels(page)
    assert axes, "no Bokeh axis rendered"
    for axis in axes:
        for label in axis["labels"]:
            assert "e+" not in label and "e-" not in label, axis
    by_plot = {a["plot"]: a for a in axes if a["axis"] == "LinearAxis"}
    drawdown = by_plot["Drawdown"]["labels"]
    assert drawdown and all(label.endswith("%") for label in drawdown), drawdown
    price = next(a for t, a in by_plot.items() if "candles" in t or "trades" in t)["labels"]
    assert any("," in label for label in price), price  # BTC prices: 42,000 not 4.2e+4
    return axes


def wait_rows(page: Any, column: str, timeout: float = 60) -> None:
    """Until a Bokeh source with `column` holds rows (the charts build after first paint)."""
    deadline = time.monotonic() + timeout
    while max(source_rows(page, column), default=0) == 0:
        assert time.monotonic() < deadline, f"no {column!r} rows on the page"
        page.wait_for_timeout(250)


def kpi(page: Any, key: str) -> str:
    return str(page.locator(f"#kpi-{key} .value").inner_text()).strip()


def test_monitoring_board_of_a_live_paper_session(
    server: DashboardServer, browser: Any, paper: str
) -> None:
    page, log = new_page(browser, WIDTH, HEIGHT)
    page.goto(server.app_url("monitoring"))
    page.wait_for_selector("#kpi-balance[data-filled]", timeout=60_000)
    session = page.locator("select").nth(1)
    option = session.locator("option", has_text=paper[:8]).first
    session.select_option(value=option.get_attribute("value"))
    firing = page.locator('#status-strip [data-rule="max_drawdown"][data-state="firing"]')
    firing.wait_for(timeout=60_000)
    # one chip per rule: the 13-row FIRING/RESOLVED storm is collapsed, with its history
    assert page.locator("#status-strip [data-rule]").count() == 2
    assert "failed:webhook" in firing.inner_text()
    assert "resolved 6× before" in firing.inner_text()
    resolved = page.locator('#status-strip [data-rule="heartbeat_silence"]')
    assert resolved.get_attribute("data-state") == "resolved"
    assert page.locator('#status-strip [data-status="loop"]').inner_text().count("running")
    # the strip is above the fold (measured in the page: the strip re-renders as bars arrive)
    top = page.evaluate(
        """() => { const find = (root) => { for (const el of root.querySelectorAll('*')) {
             if (el.id === 'status-strip') return el;
             if (el.shadowRoot) { const f = find(el.shadowRoot); if (f) return f; } }
           return null; };
           const el = find(document); return el ? el.getBoundingClientRect().top : null; }"""
    )
    assert top is not None and top < HEIGHT / 2, top
    wait_rows(page, "exit_price")  # trade markers on the candles
    assert max(source_rows(page, "high")) > 0  # the replayed candles
    assert_axes_readable(page)
    # live: the session keeps trading and the page follows without a reload
    before = int(kpi(page, "trades").replace(",", ""))
    deadline = time.monotonic() + 60
    while int(kpi(page, "trades").replace(",", "")) <= before:
        assert time.monotonic() < deadline, "no new trade reached the page"
        page.wait_for_timeout(250)
    assert page.locator("text=Logged (wall clock, UTC)").count() == 1
    shot(page, "monitoring")
    assert log.errors() == [], log.console
    page.close()


def pick_run(page: Any, text: str) -> None:
    run_select = page.locator("select").last
    option = run_select.locator("option", has_text=text).first
    run_select.select_option(value=option.get_attribute("value"))


def test_backtesting_reads_like_a_trader_expects(
    server: DashboardServer, browser: Any, db: dashdb.DashDb
) -> None:
    page, log = new_page(browser, WIDTH, HEIGHT)
    page.goto(server.app_url("backtesting"))
    page.wait_for_selector("text=Search (id, parameters)", timeout=60_000)
    # the newest run is the 100 000-bar one: candles (aggregated per view) with trades
    page.wait_for_selector("text=/Trades \\(\\d/", timeout=60_000)
    wait_rows(page, "exit_price")
    assert 0 < max(source_rows(page, "high")) <= 1000
    assert_axes_readable(page)
    assert kpi(page, "buy_and_hold").endswith("%") and kpi(page, "profit_factor") != "–"
    shot(page, "backtesting-long-run")

    # sorting by Sharpe: the failed job and the zero-trade run (no Sharpe) come last
    sort = page.locator("select").nth(3)  # strategy, symbol, status, sort, run
    sort.select_option(label="Sharpe")
    run_select = page.locator("select").last
    deadline = time.monotonic() + 30
    while True:  # Panel widgets live in shadow DOM: poll through Playwright's locators
        texts = [o.inner_text() for o in run_select.locator("option").all()]
        if (texts and "failed" in texts[-1]) or time.monotonic() > deadline:
            break
        page.wait_for_timeout(250)
    assert "failed" in " ".join(texts[-2:]) and "ml_basic" in " ".join(texts[-2:]), texts
    # sweep jobs read apart: only `fast` varies
    assert any("· fast=5 ·" in t for t in texts) and any("· fast=60 ·" in t for t in texts)

    pick_run(page, "ml_basic")
    why = page.locator("#why-no-trades")
    why.wait_for(timeout=30_000)
    assert "sized to zero" in why.inner_text() and "min_confidence" in why.inner_text()
    shot(page, "backtesting-zero-trade")

    # a run recorded while the page is open appears without a reload
    dashdb.run_backtest(db.url, ["strategy=sma_crossover", "strategy.fast=7"])
    page.wait_for_selector("select >> option:has-text('fast=7')", state="attached",
                           timeout=60_000)  # fmt: skip
    assert log.errors() == [], log.console
    page.close()


def test_backtesting_compare_and_sweep(server: DashboardServer, browser: Any) -> None:
    page, log = new_page(browser, WIDTH, HEIGHT)
    page.goto(server.app_url("backtesting"))
    page.wait_for_selector("text=Search (id, parameters)", timeout=60_000)
    page.get_by_text("Sweeps", exact=True).click()
    page.wait_for_selector("text=Job", timeout=30_000)
    page.wait_for_timeout(500)
    shot(page, "backtesting-sweep")
    page.get_by_text("Compare", exact=True).click()
    page.wait_for_selector("#compare-view", state="attached", timeout=30_000)
    page.wait_for_timeout(500)
    for axis in axis_labels(page):
        assert not any("e+" in label for label in axis["labels"]), axis
    shot(page, "backtesting-compare")
    assert log.errors() == [], log.console
    page.close()
