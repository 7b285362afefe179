"""A `kill -9` of a paper session, seen in Chromium on the monitoring page (issue 15).

A real paper session (replay feed, SQLite) runs in a subprocess; the monitoring dashboard
runs on a real Bokeh server. The page already open shows the session as not running within
3 × its check interval of the kill, a freshly loaded page shows it at once, and a session
started after the page loaded appears in the session list without a reload.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atb.dashboards.browser import chromium, chromium_path, new_page
from atb.dashboards.discovery import app_factory, find
from atb.dashboards.readonly import dispose_all
from atb.dashboards.server import DashboardServer
from atb.dashboards.settings import DashboardSettings

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        chromium_path() is None, reason="chromium not installed (apt install chromium)"
    ),
]

CHECK_INTERVAL = 2.0
UPDATE_INTERVAL = 0.5


def paper(tmp: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "ATB_OUTPUT_DIR": str(tmp / "outputs")}
    env.pop("LOG_JSON", None)
    return subprocess.Popen(
        [sys.executable, "-m", "atb", "mode=paper", "exchange=replay", "health=off",
         "alerts=off", f"db.url=sqlite:///{tmp / 'atb.db'}", *extra],
        cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def newest_run(db: Path, status: str | None = None) -> tuple[str, str] | None:
    with sqlite3.connect(db) as conn:
        sql = "SELECT id, status FROM runs WHERE mode = 'paper'"
        if status:
            sql += f" AND status = '{status}'"
        row = conn.execute(sql + " ORDER BY started_at DESC LIMIT 1").fetchone()
    return None if row is None else (row[0], row[1])


def wait_for_heartbeats(db: Path, run_id: str, n: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT iterations FROM run_heartbeats WHERE run_id = ?", (run_id,)
            ).fetchone()
        if row and row[0] >= n:
            return
        time.sleep(0.2)
    pytest.fail(f"session {run_id} wrote no heartbeat with {n} iterations")


def loop_kpi(page: Any) -> str:
    return str(page.locator("#kpi-health .value").inner_text()).strip()


@pytest.fixture
def session_db(tmp_path: Path) -> Iterator[Path]:
    # A first, finished session: the page needs a run table to open on.
    first = paper(tmp_path, "live.max_iterations=2", "live.check_interval=0.05")
    assert first.wait(timeout=180) == 0, first.stderr.read() if first.stderr else ""
    yield tmp_path
    dispose_all()


def test_kill_9_shows_not_running_on_open_and_fresh_pages(session_db: Path) -> None:
    db = session_db / "atb.db"
    settings = DashboardSettings(db_url=f"sqlite:///{db}", update_interval=UPDATE_INTERVAL)
    factory = app_factory(find("monitoring"))
    srv = DashboardServer({"monitoring": lambda: factory(settings)}, port=0)
    srv.start()
    proc: subprocess.Popen[str] | None = None
    try:
        with chromium() as browser:
            page, log = new_page(browser)
            page.goto(srv.app_url("monitoring"))
            page.wait_for_selector("#kpi-health[data-filled]", timeout=30_000)
            assert loop_kpi(page) == "finished"

            # A session started after the page loaded appears in the list, no reload.
            proc = paper(session_db, f"live.check_interval={CHECK_INTERVAL}")
            deadline = time.monotonic() + 120
            while (run := newest_run(db, "running")) is None:
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.2)
            run_id = run[0]
            wait_for_heartbeats(db, run_id, 2)
            option = page.locator("select option", has_text=run_id[:8])
            option.wait_for(state="attached", timeout=15_000)
            page.locator("select").nth(1).select_option(value=option.get_attribute("value"))
            page.locator("#kpi-health .value:text-is('running')").wait_for(timeout=15_000)

            os.kill(proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            proc.wait(timeout=10)
            page.locator("#kpi-health .value:text-is('not running')").wait_for(timeout=30_000)
            seen_after = time.monotonic() - killed
            print(f"kill -9 shown as not running after {seen_after:.1f} s")
            assert seen_after <= 3 * CHECK_INTERVAL + UPDATE_INTERVAL + 1.0, seen_after
            assert page.locator("text=no heartbeat since").count() >= 1
            assert newest_run(db, "running") == (run_id, "running")  # the DB row still says so

            fresh, fresh_log = new_page(browser)
            fresh.goto(srv.app_url("monitoring"))
            fresh.wait_for_selector("#kpi-health[data-filled]", timeout=30_000)
            assert loop_kpi(fresh) == "not running"  # the killed session is the default
            assert fresh.locator("text=no heartbeat since").count() >= 1
            assert log.errors() == [] and fresh_log.errors() == []
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        srv.stop()
