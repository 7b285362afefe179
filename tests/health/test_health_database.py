"""The database component: SQLite, a hung server, and a real PostgreSQL stopped and restarted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from health_helpers import PROBES, BlackHole, make_config, request, running
from sqlalchemy import create_engine

# Each test starts a process of its own (the health server, a session or the CLI): e2e.
pytestmark = pytest.mark.e2e


def db_node(url: str) -> SimpleNamespace:
    """What the check uses of `atb.db.node.Database`: its `.engine`."""
    engine = create_engine(url)
    return SimpleNamespace(engine=engine, url=engine.url)


def db_check(**kw: Any) -> dict[str, Any]:
    return {"_target_": "atb.health.checks.DatabaseCheck", **kw}


def beat() -> None:
    PROBES.heartbeat.start(interval=10)
    PROBES.heartbeat.beat()


def database(server: Any) -> tuple[int, str, dict[str, Any]]:
    resp = request(server, "/status")
    body = resp.json()
    return resp.status, body["status"], body["components"]["database"]


def test_sqlite_is_healthy(tmp_path: Path) -> None:
    db = db_node(f"sqlite:///{tmp_path / 'atb.db'}")
    with running(make_config(checks=[db_check()]), db=db) as server:
        beat()
        code, overall, component = database(server)
        assert (code, overall) == (200, "healthy")
        assert component["connected"] is True
        assert component["dialect"] == "sqlite"
        assert component["latency_ms"] >= 0


def test_hung_database_is_reported_within_the_timeout() -> None:
    hole = BlackHole()
    try:
        url = f"postgresql+psycopg://atb:hunter2@127.0.0.1:{hole.port}/atb"
        checks = [db_check(timeout=0.5, ttl=0.2)]
        with running(make_config(checks=checks), db=db_node(url)) as server:
            beat()
            t0 = time.monotonic()
            code, overall, component = database(server)
            assert time.monotonic() - t0 < 1.5
            assert (code, overall) == (200, "degraded")  # degraded_status_code default 200
            assert component["error"] == "timeout"
            assert component["connected"] is False
            assert "hunter2" not in request(server, "/status").body.decode()
            # the server stays responsive
            assert request(server, "/health").elapsed < 0.2
    finally:
        hole.close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[Any]:
    pgtemp = pytest.importorskip("atb_testkit.pgtemp", reason="atb_testkit.pgtemp not available")
    if pgtemp.find_pg_bin() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    pg = pgtemp.TempPostgres()
    pg.init()
    pg.start()
    yield pg
    pg.destroy()


@pytest.mark.postgres
def test_postgres_stopped_then_restarted(postgres: Any) -> None:
    checks = [db_check(timeout=2.0, ttl=0.2)]
    with running(make_config(checks=checks), db=db_node(postgres.url())) as server:
        beat()
        code, overall, component = database(server)
        assert (code, overall, component["dialect"]) == (200, "healthy", "postgresql")
        assert component["url"].startswith("postgresql+psycopg://atb@127.0.0.1")

        postgres.stop("immediate")
        time.sleep(0.25)
        t0 = time.monotonic()
        code, overall, component = database(server)
        assert time.monotonic() - t0 < 2.5
        assert overall == "degraded"
        assert component["connected"] is False
        assert component["error"] in {"OperationalError", "timeout"}

        postgres.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            time.sleep(0.25)
            code, overall, component = database(server)
            if overall == "healthy":
                break
        assert (code, overall, component["connected"]) == (200, "healthy", True)


@pytest.mark.postgres
def test_postgres_down_can_be_made_unhealthy(postgres: Any) -> None:
    url = postgres.url().replace(str(postgres.port), str(postgres.port + 1))  # nothing there
    checks = [db_check(timeout=2.0, failure_status="unhealthy")]
    with running(make_config(checks=checks), db=db_node(url)) as server:
        beat()
        code, overall, _ = database(server)
        assert (code, overall) == (503, "unhealthy")
