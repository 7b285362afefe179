"""Dashboard pages that used to break (issue 15), in Chromium.

- after a sweep with a failed job the backtesting page was only a traceback
  (`NaTType does not support strftime`); every dashboard must render with failed, running,
  empty and zero-trade runs present;
- the backtesting search box raised `_pending_writes should be non-None` and never filtered;
  it also applied only on blur, not on Enter;
- an exception while building a page is logged through atb and shown as one line;
- `panel serve panels` (the folder) failed with "No 'main.py'"; its index page fetches
  nothing outside 127.0.0.1.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from loguru import logger
from sqlalchemy import create_engine, insert

from atb.dashboards import tables as t
from atb.dashboards.browser import chromium_path, new_page
from atb.dashboards.discovery import named_pages, panels_dir
from atb.dashboards.guard import guarded_page
from atb.dashboards.readonly import dispose_all
from atb.dashboards.server import DashboardServer
from atb.dashboards.settings import DashboardSettings
from atb.db.migrate import upgrade

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None, reason="chromium not installed (apt install chromium)"
    ),
]

NAMES = ("monitoring", "backtesting", "market_prediction")
READY = "div.atb-kpis, .atb-empty, .atb-page-error, h1, h2"


def _run_row(run_id: str, status: str, **kw: Any) -> dict[str, Any]:
    row = {
        "id": run_id, "mode": "backtest", "strategy": "sma_crossover", "symbol": "BTCUSDT",
        "timeframe": "1h", "status": status, "started_at": datetime.now(UTC), "config": {},
        "overrides": [], "parameters": {"fast": 7, "slow": 50},
    }  # fmt: skip
    row.update(kw)
    return row


@pytest.fixture(scope="module")
def awkward_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A sweep with a failed job, plus a running backtest and a zero-trade one."""
    tmp = tmp_path_factory.mktemp("awkward")
    env = {**os.environ, "ATB_OUTPUT_DIR": str(tmp / "out"), "ATB_MULTIRUN_DIR": str(tmp / "mr")}
    proc = subprocess.run(
        [sys.executable, "-m", "atb", "-m", "strategy=sma_crossover", "strategy.fast=5,60",
         f"db.url=sqlite:///{tmp / 'atb.db'}"],
        capture_output=True, text=True, timeout=300, cwd=tmp, env=env,
    )  # fmt: skip
    assert "1 failed" in proc.stderr, proc.stderr[-2000:]
    url = f"sqlite:///{tmp / 'atb.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            insert(t.runs),
            [
                _run_row("running-backtest-0001", "running"),
                _run_row(
                    "zero-trades-0001",
                    "finished",
                    finished_at=datetime.now(UTC),
                    metrics={"num_trades": 0, "total_return": 0.0},
                    bars=0,
                ),
            ],
        )
    engine.dispose()
    yield url
    dispose_all()


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('empty') / 'atb.db'}"
    engine = create_engine(url)
    upgrade(engine)
    engine.dispose()
    return url


def serve(url: str, extra: dict[str, Any] | None = None) -> DashboardServer:
    settings = DashboardSettings(db_url=url, update_interval=0.5)
    apps: dict[str, Any] = named_pages(NAMES, settings)
    apps.update(extra or {})
    srv = DashboardServer(apps, port=0)
    srv.start()
    return srv


@pytest.mark.parametrize("which", ["awkward", "empty"])
def test_every_dashboard_renders(which: str, awkward_db: str, empty_db: str, browser: Any) -> None:
    srv = serve(awkward_db if which == "awkward" else empty_db)
    try:
        for name in NAMES:
            page, log = new_page(browser)
            page.goto(srv.app_url(name))
            page.wait_for_selector(READY, timeout=30_000)
            page.wait_for_timeout(1500)  # the body built after first paint
            text = page.inner_text("body")
            assert "Traceback" not in text and "NaTType" not in text, (name, text[:500])
            assert page.locator(".atb-page-error").count() == 0, (name, text[:500])
            assert log.errors() == [], (name, log.errors())
            if which == "awkward" and name == "backtesting":
                assert page.locator("#kpi-total_return").count() == 1
            page.close()
    finally:
        srv.stop()


def test_search_applies_on_enter(awkward_db: str, browser: Any) -> None:
    srv = serve(awkward_db)
    records: list[str] = []
    sink = logger.add(lambda m: records.append(str(m)), level="ERROR")
    try:
        page, log = new_page(browser)
        page.goto(srv.app_url("backtesting"))
        page.wait_for_selector("text=Search (id, parameters)", timeout=30_000)
        page.wait_for_timeout(1000)
        run_select = page.locator("select").last
        assert run_select.locator("option").count() == 4
        box = page.locator("input[type=text]").first
        box.fill("fast=60")
        box.press("Enter")  # no blur: Enter alone applies the filter
        deadline = time.monotonic() + 10
        while run_select.locator("option").count() != 1:  # Panel widgets live in shadow DOM
            assert time.monotonic() < deadline, "the search did not filter the runs"
            page.wait_for_timeout(200)
        assert "fast=60" in run_select.locator("option").first.inner_text()
        assert log.errors() == []
        assert not [r for r in records if "_pending_writes" in r or "failed" in r], records
    finally:
        logger.remove(sink)
        srv.stop()


def test_page_exception_is_one_logged_line(empty_db: str, browser: Any) -> None:
    def broken(_settings: Any = None) -> Any:
        raise ValueError("NaTType does not support strftime")

    records: list[Any] = []
    sink = logger.add(lambda m: records.append(m.record), level="ERROR")
    srv = serve(empty_db, {"broken": guarded_page("broken", broken)})
    try:
        page, _log = new_page(browser)
        page.goto(srv.app_url("broken"))
        page.wait_for_selector(".atb-page-error", timeout=30_000)
        notice = page.inner_text(".atb-page-error")
        assert "could not be built: ValueError: NaTType does not support strftime" in notice
        assert "\n" not in notice.strip() and "Traceback" not in page.inner_text("body")
        logged = [r for r in records if "page 'broken'" in r["message"]]
        assert logged and all(r["exception"] is not None for r in logged)  # traceback: log only
    finally:
        logger.remove(sink)
        srv.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_panel_serve_the_folder(awkward_db: str, browser: Any, tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        ["panel", "serve", str(panels_dir()), "--port", str(port), "--address", "127.0.0.1",
         "--args", "--db-url", awkward_db],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/panels", timeout=5)
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
                assert time.monotonic() < deadline, "panel serve panels did not start"
                time.sleep(0.5)
        page, log = new_page(browser)
        page.goto(f"http://127.0.0.1:{port}/")  # redirected to the folder's app
        page.wait_for_selector("ul.atb-index a", timeout=30_000)
        links = [a.inner_text() for a in page.locator("ul.atb-index a").all()]
        assert sorted(links) == sorted(NAMES)
        page.wait_for_timeout(500)
        assert log.foreign_hosts({"127.0.0.1"}) == []
        assert log.errors() == []
        page.locator("ul.atb-index a", has_text="backtesting").click()
        page.wait_for_selector("#kpi-total_return", timeout=30_000)
        assert log.foreign_hosts({"127.0.0.1"}) == []
        assert log.errors() == []
    finally:
        proc.terminate()
        proc.wait(timeout=20)
