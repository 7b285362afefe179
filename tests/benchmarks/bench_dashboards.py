"""Dashboard speed (issue 9), on a database of 100 000 trades and 1 000 000 events.

Targets: first meaningful paint of each dashboard <= 2 s in headless Chromium (navigation
start until a KPI card holding a real value is visible; fresh browser context, so no cached
JS), reported as a ratio to a bare Panel page served the same way (the named baseline);
one periodic monitoring update <= 100 ms of server time (new rows read, aggregates folded,
the status board, candles, curve and daily bars streamed, KPI pane re-rendered).

The seeded database is cached under test-artifacts/bench/ (it takes a minute to write).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import panel as pn
import pytest
from atb_testkit import sample

from atb.dashboards.browser import chromium, chromium_path, first_meaningful_paint, new_page
from atb.dashboards.discovery import named_pages
from atb.dashboards.server import DashboardServer
from atb.dashboards.settings import DashboardSettings

TRADES, EVENTS = 100_000, 1_000_000
CACHE = Path(__file__).resolve().parents[2] / "test-artifacts" / "bench"
READY = {
    "monitoring": "#kpi-balance[data-filled]",
    "backtesting": "#kpi-total_return[data-filled]",
    "market_prediction": "#kpi-accuracy[data-filled]",
}
FMP_BUDGET_S = 2.0
RUNS = 5  # median of 5 fresh-context loads: one stalled run on a busy host does not decide
UPDATE_BUDGET_S = 0.100


@pytest.fixture(scope="module")
def big_db() -> str:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"dashboards-{TRADES}-{EVENTS}-v1.db"
    url = f"sqlite:///{path}"
    if not path.exists():
        t0 = time.perf_counter()
        partial = path.with_suffix(".partial")
        partial.unlink(missing_ok=True)
        sample.seed(f"sqlite:///{partial}", scale_trades=TRADES, scale_events=EVENTS)
        partial.rename(path)
        print(
            f"\n[dashboards] seeded {TRADES:,} trades + {EVENTS:,} events in "
            f"{time.perf_counter() - t0:.1f} s"
        )
    return url


@pytest.mark.skipif(chromium_path() is None, reason="chromium not installed")
def test_first_meaningful_paint(big_db: str) -> None:
    settings = DashboardSettings(db_url=big_db, update_interval=5)
    apps: dict[str, Any] = named_pages(READY, settings)
    # The floor on this host, printed for context: a Panel page holding nothing but one KPI
    # card, same server, same browser (~1.5 s on an idle 2-core machine: JS parse and the
    # websocket round trip). The target itself is the flat 2 s.
    apps["baseline"] = lambda: pn.pane.HTML('<div id="kpi-balance" data-filled>1</div>')
    server = DashboardServer(apps, port=0)
    server.start()  # warm=True: one session per app is built at start, as in production
    results: dict[str, list[float]] = {}
    try:
        with chromium() as browser:
            for name, selector in {"baseline": READY["monitoring"], **READY}.items():
                times = []
                for _ in range(RUNS):
                    page, log = new_page(browser)
                    times.append(first_meaningful_paint(page, server.app_url(name), selector))
                    assert log.errors() == []
                    page.context.close()
                results[name] = times
    finally:
        server.stop()
    for name, times in results.items():
        print(
            f"\n[dashboards] first meaningful paint {name}: median "
            f"{statistics.median(times):.2f} s (runs: {', '.join(f'{t:.2f}' for t in times)})"
        )
    floor = statistics.median(results.pop("baseline"))
    print(f"\n[dashboards] bare Panel page (floor): {floor:.2f} s; budget {FMP_BUDGET_S:.2f} s")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"[dashboards] {name}: {median:.2f} s = {median / floor:.2f}x the bare page")
        assert median <= FMP_BUDGET_S, f"{name}: {times} (floor {floor:.2f} s)"


def test_periodic_update_server_time(big_db: str, tmp_path: Path) -> None:
    import shutil

    import panel as pn

    from atb.dashboards.monitoring.app import MonitoringApp
    from atb.dashboards.readonly import dispose_all

    # A private copy: this test writes new rows, the cached database stays pristine.
    db_path = tmp_path / "live.db"
    shutil.copy(big_db.removeprefix("sqlite:///"), db_path)
    url = f"sqlite:///{db_path}"
    app = MonitoringApp(DashboardSettings(db_url=url, update_interval=5))
    original = pn.state.add_periodic_callback
    pn.state.add_periodic_callback = lambda *a, **k: None  # type: ignore[method-assign]
    try:
        app.view()
    finally:
        pn.state.add_periodic_callback = original  # type: ignore[method-assign]
    timings, model_timings = [], []
    for i in range(10):
        sample.add_trade(url, pnl=float(i + 1))
        t0 = time.perf_counter()
        app.update()
        timings.append(time.perf_counter() - t0)
        model_timings.append(app.last_update_s or 0.0)
    dispose_all()
    median, worst = statistics.median(timings), max(timings)
    print(
        f"\n[dashboards] periodic update (1 new trade; {TRADES:,} trades, {EVENTS:,} events): "
        f"median {median * 1000:.1f} ms, max {worst * 1000:.1f} ms "
        f"(of which queries+fold median {statistics.median(model_timings) * 1000:.1f} ms)"
    )
    assert app.model is not None and app.model.state.trades == TRADES + 10
    assert median <= UPDATE_BUDGET_S
