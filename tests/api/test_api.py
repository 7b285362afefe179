"""The JSON API against a real paper session (FakeBinance, real ccxt) on SQLite and
PostgreSQL: from the session's health server while it trades, then from the dashboards
server over the same database once it has stopped.

Checked: auth (bearer token, like /status), every endpoint validates against its published
schema, pages partition the list and carry the total, bad query parameters are a 400 with
one line, and a secret planted in the run's records never comes out.
"""

from __future__ import annotations

import http.client
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from atb_testkit import FakeBinance
from atb_testkit.outage import InProcessSession, wait_for
from sqlalchemy import create_engine, text

from atb.api.schemas import SCHEMAS, Balance, Metrics, PositionsPage, SystemStatus, TradesPage

sys.path.insert(0, str(Path(__file__).parents[1] / "live"))
from live_helpers import QUICK, SLOW, SMA, Advancer, zigzag_candles

# Each test starts a process of its own (the health server, a session or the CLI): e2e.
pytestmark = pytest.mark.e2e

TOKEN = "api-token-6f1d2c9a8b7e"
PLANTED = "planted-secret-4e5f6a7b8c9d"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str, token: str | None = TOKEN) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {token}"} if token else {})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def get_json(port: int, path: str) -> Any:
    code, body = get(port, path)
    assert code == 200, (path, code, body[:300])
    return json.loads(body)


def plant(db_url: str, run_id: str) -> None:
    """A secret in the run's stored metrics, under a sensitive key and inside free text."""
    metrics = {
        "api_key": PLANTED,
        "note": f"exchange said: invalid api_key={PLANTED}",
        "header": f"Authorization: Bearer {PLANTED}",
        "sharpe": 1.5,
    }
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text("UPDATE runs SET metrics = :m WHERE id = :id"),
                {"m": json.dumps(metrics), "id": run_id},
            )
    finally:
        engine.dispose()


def planted_metrics(port: int, db_url: str, run_id: str) -> str:
    """/api/metrics with the planted secret in the run's metrics (a running session rewrites
    them now and then: plant until an answer carries the plant)."""
    for _ in range(50):
        plant(db_url, run_id)
        body = get(port, "/api/metrics")[1].decode()
        if '"sharpe":1.5' in body:
            return body
    raise AssertionError("the planted metrics never showed up")


def check_api(port: int, run_id: str) -> None:
    """Every endpoint, its schema, paging, bad parameters and redaction."""
    metrics = Metrics.model_validate(get_json(port, "/api/metrics"))
    assert metrics.run.run_id == run_id and metrics.run.mode == "paper"
    assert metrics.trades >= 2 and metrics.wins + metrics.losses <= metrics.trades

    full = TradesPage.model_validate(get_json(port, "/api/trades?limit=1000"))
    assert full.total == len(full.items) == metrics.trades
    assert metrics.realized_pnl == pytest.approx(sum(t.pnl for t in full.items))
    paged = []
    for offset in range(full.total):
        page = TradesPage.model_validate(get_json(port, f"/api/trades?limit=1&offset={offset}"))
        assert (page.total, page.limit, page.offset) == (full.total, 1, offset)
        paged += page.items
    assert paged == full.items  # newest first, no gaps, no repeats
    beyond = TradesPage.model_validate(get_json(port, f"/api/trades?offset={full.total}"))
    assert beyond.items == [] and beyond.total == full.total

    every = PositionsPage.model_validate(get_json(port, "/api/positions?status=all"))
    opened = PositionsPage.model_validate(get_json(port, "/api/positions"))
    assert opened.status == "open" and all(p.status == "open" for p in opened.items)
    assert every.total >= opened.total and every.total >= 1

    balance = Balance.model_validate(get_json(port, "/api/balance"))
    assert balance.run_id == run_id and balance.equity is not None and balance.equity > 0

    status = SystemStatus.model_validate(get_json(port, "/api/system/status"))
    assert status.run.run_id == run_id and status.database["connected"] is True

    schema = get_json(port, "/api/schema/trades")
    assert schema == SCHEMAS["trades"].model_json_schema()
    assert set(get_json(port, "/api/schema")["schemas"]) == set(SCHEMAS)

    for path, word in [
        ("/api/trades?limit=0", "limit"),
        ("/api/trades?limit=abc", "limit"),
        ("/api/trades?offset=-1", "offset"),
        ("/api/trades?limit=1&limit=2", "limit"),
        ("/api/positions?status=maybe", "status"),
        ("/api/balance?colour=red", "colour"),
    ]:
        code, body = get(port, path)
        assert code == 400, (path, body)
        error = json.loads(body)
        assert error["code"] == 400 and word in error["error"]
        assert "\n" not in error["error"] and "Traceback" not in body.decode()

    for path in ("/api/metrics", "/api/trades", "/api/positions", "/api/balance"):
        assert get(port, path, token=None)[0] == 401
        assert get(port, path, token="wrong-token-value")[0] == 401
        assert PLANTED not in get(port, path)[1].decode()
    assert PLANTED not in get(port, "/api/system/status")[1].decode()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBinance]:
    with FakeBinance(
        candles=zigzag_candles(n=3000, leg=4), warmup=SLOW + 30,
        balances={"USDT": 10_000.0, "BTC": 0.0},
    ) as fake:  # fmt: skip
        monkeypatch.setenv("BINANCE_API_KEY", fake.api_key)
        monkeypatch.setenv("BINANCE_API_SECRET", fake.api_secret)
        monkeypatch.setenv("ATB_API_TOKEN", TOKEN)
        monkeypatch.delenv("PORT", raising=False)
        monkeypatch.delenv("HEALTH_CHECK_PORT", raising=False)
        yield fake


def test_api_from_a_running_session_and_from_the_dashboards_server(
    db_url: str, fake: FakeBinance, tmp_path: Path
) -> None:
    port = free_port()
    args = ["mode=paper", *SMA, *QUICK, "health=on", f"health.port={port}",
            f"exchange.base_url={fake.url}", f"db.url={db_url}", "logging.sinks=[]",
            "runner.write_outputs=false"]  # fmt: skip
    with Advancer(fake):
        session = InProcessSession(args, "paper", "sma_crossover").start()
        try:
            run_id = session.ctx.run_id

            def trades() -> int:
                try:
                    code, body = get(port, "/api/trades?limit=1")
                except OSError:  # the health server is not listening yet
                    return 0
                return int(json.loads(body)["total"]) if code == 200 else 0

            wait_for(lambda: trades() >= 2, 120, "two closed trades")
            body = planted_metrics(port, db_url, run_id)
            assert PLANTED not in body and "[REDACTED]" in body
            check_api(port, run_id)
            status = SystemStatus.model_validate(get_json(port, "/api/system/status"))
            assert status.loop is not None and status.loop.source == "process"
            assert status.loop.state == "running" and status.status == "healthy"
            code, body = get(port, f"/api/trades?run_id={'0' * 32}")
            assert code == 400 and "describes run" in json.loads(body)["error"]
            assert get(port, "/health", token=None)[0] == 200  # probes stay open
        finally:
            session.stop()

    # The same API over the database, from `atb dashboards run`'s server.
    from atb.api.handlers import database_routes
    from atb.dashboards.server import DashboardServer

    server = DashboardServer(
        {"blank": lambda: _blank()}, port=free_port(), warm=False,
        extra_routes=database_routes(db_url),
    )  # fmt: skip
    server.start()
    try:
        body = planted_metrics(server.port, db_url, run_id)
        assert PLANTED not in body and "[REDACTED]" in body
        check_api(server.port, run_id)
        status = SystemStatus.model_validate(get_json(server.port, "/api/system/status"))
        assert status.loop is not None and status.loop.source == "database"
        assert status.loop.state == "stopped" and status.status == "unhealthy"
        code, body = get(server.port, "/api/metrics?run_id=nope")
        assert code == 404 and json.loads(body)["error"] == "no run 'nope'"
        by_id = Metrics.model_validate(get_json(server.port, f"/api/metrics?run_id={run_id}"))
        assert by_id.run.run_id == run_id
    finally:
        server.stop()


def _blank() -> Any:
    import panel as pn

    return pn.pane.Markdown("blank")
