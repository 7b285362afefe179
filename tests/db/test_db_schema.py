"""Schema, migrations and Database.start() checks, on SQLite and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from atb_testkit.pgtemp import free_port
from db_helpers import make_db
from sqlalchemy import inspect, text

from atb.db.errors import BadDatabaseUrl, DatabaseUnavailable, SchemaMismatch
from atb.db.migrate import downgrade, head_revision, is_current, schema_state, upgrade
from atb.db.migrations import HEAD_REVISION
from atb.db.models import Base

RUN_TABLES = {"runs", "trades", "orders", "positions", "account_history", "predictions",
              "decisions", "run_series"}  # fmt: skip


def test_fresh_database_is_created_and_migrated(db_url: str) -> None:
    db = make_db(db_url)
    db.start()
    try:
        state = schema_state(db.engine)
        assert state.status == "current" and state.current == head_revision()
        tables = set(inspect(db.engine).get_table_names())
        assert {"system_events", "alembic_version"} | RUN_TABLES <= tables
    finally:
        db.stop()


def test_head_revision_constant_matches_alembic() -> None:
    """A new migration must bump atb.db.migrations.HEAD_REVISION: start() trusts it to
    recognise a current database without importing Alembic."""
    assert head_revision() == HEAD_REVISION, (
        f"set HEAD_REVISION = {head_revision()!r} in atb/db/migrations/__init__.py"
    )


def test_current_database_starts_without_importing_alembic(db_url: str) -> None:
    db = make_db(db_url)
    db.start()  # migrates the empty database (Alembic)
    db.stop()
    code = (
        "import sys; from atb.db.node import Database, DatabaseConfig; "
        "from atb.runtime.context import RunContext; "
        "cfg = DatabaseConfig.model_validate({'_target_': 'x', 'url': sys.argv[1]}); "
        "db = Database(cfg, RunContext()); db.start(); db.stop(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, db_url], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout


def test_fast_check_is_inconclusive_unless_at_head(db_url: str) -> None:
    db = make_db(db_url, auto_migrate=False)
    try:
        assert not is_current(db.engine)  # no alembic_version table at all
        upgrade(db.engine, "0001_system_events")
        assert not is_current(db.engine)
        upgrade(db.engine)
        assert is_current(db.engine)
    finally:
        db.stop()


def test_migrations_match_the_models(database: object) -> None:
    """Autogenerate finds nothing to do: every model change shipped a migration."""
    engine = database.engine  # type: ignore[attr-defined]
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == [], f"models changed without a migration: run `atb db revision -m ...` ({diff})"


def test_migrations_downgrade_to_empty_and_back(db_url: str) -> None:
    db = make_db(db_url)
    try:
        upgrade(db.engine)
        downgrade(db.engine, "base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}
        upgrade(db.engine)
        assert schema_state(db.engine).status == "current"
    finally:
        db.stop()


def test_system_events_columns_and_indexes(database: object) -> None:
    insp = inspect(database.engine)  # type: ignore[attr-defined]
    columns = {c["name"] for c in insp.get_columns("system_events")}
    assert {"timestamp", "event_type", "severity", "message", "details", "component",
            "error_code", "stack_trace", "alert_sent", "alert_method", "session_id",
            "event_uuid"} <= columns  # fmt: skip
    indexes = {i["name"]: i["column_names"] for i in insp.get_indexes("system_events")}
    assert indexes["ix_system_events_session_id_timestamp"] == ["session_id", "timestamp"]
    assert indexes["ix_system_events_timestamp"] == ["timestamp"]
    uniques = insp.get_unique_constraints("system_events")
    assert any(u["column_names"] == ["event_uuid"] for u in uniques)


def test_sqlite_runs_in_wal_mode(sqlite_url: str) -> None:
    db = make_db(sqlite_url)
    db.start()
    try:
        with db.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert Path(sqlite_url.removeprefix("sqlite:///")).exists()
    finally:
        db.stop()


def test_older_revision_asks_for_upgrade(db_url: str) -> None:
    db = make_db(db_url, auto_migrate=False)
    try:
        upgrade(db.engine, "0001_system_events")
        with pytest.raises(SchemaMismatch) as err:
            db.start()
        message = str(err.value)
        assert "at revision 0001_system_events" in message
        assert f"code expects {head_revision()}" in message
        assert "run `atb db upgrade`" in message
        upgrade(db.engine)
        db.start()  # now current
    finally:
        db.stop()


def test_0004_backfills_open_positions(db_url: str) -> None:
    """Account rows written before 0004 get open_positions from position_qty; no exposure."""
    db = make_db(db_url, auto_migrate=False)
    try:
        upgrade(db.engine, "0003_lean_event_indexes")
        with db.engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO runs (id, mode, symbol, timeframe, status, started_at, config,"
                    " overrides) VALUES ('r1', 'paper', 'BTCUSDT', '1h', 'finished',"
                    " CURRENT_TIMESTAMP, '{}', '[]')"
                )
            )
            for qty in (0.0, 0.5, -0.25):
                conn.execute(
                    text(
                        "INSERT INTO account_history (run_id, mode, time, balance, equity,"
                        " drawdown, position_qty) VALUES ('r1', 'paper', CURRENT_TIMESTAMP,"
                        " 1, 1, 0, :qty)"
                    ),
                    {"qty": qty},
                )
        upgrade(db.engine)
        with db.engine.connect() as conn:
            rows = conn.execute(
                text("SELECT open_positions, exposure FROM account_history ORDER BY id")
            ).all()
        assert [tuple(r) for r in rows] == [(0, None), (1, None), (1, None)]
        db.start()  # current
    finally:
        db.stop()


def test_empty_database_without_auto_migrate(sqlite_url: str) -> None:
    db = make_db(sqlite_url, auto_migrate=False)
    with pytest.raises(SchemaMismatch, match="atb db upgrade"):
        db.start()
    db.stop()


def test_unknown_newer_revision_is_refused(sqlite_url: str) -> None:
    db = make_db(sqlite_url)
    db.start()
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'ffff_future'"))
    with pytest.raises(SchemaMismatch, match="newer atb"):
        db.start()
    db.stop()


def test_bad_url_is_reported_with_password_masked() -> None:
    with pytest.raises(BadDatabaseUrl) as err:
        make_db("not a url://user:hunter2@host/db")
    assert "hunter2" not in str(err.value) and "***" in str(err.value)
    with pytest.raises(BadDatabaseUrl, match="driver"):
        make_db("nosuchdb+nodriver://user:hunter2@host/db")


def test_unreachable_server_fails_fast_with_password_masked() -> None:
    port = free_port()  # nothing listens there
    db = make_db(f"postgresql+psycopg://atb:hunter2@127.0.0.1:{port}/atb", connect_timeout=2)
    with pytest.raises(DatabaseUnavailable) as err:
        db.start()
    message = str(err.value)
    assert "hunter2" not in message
    assert f"postgresql+psycopg://atb:***@127.0.0.1:{port}/atb" in message
    db.stop()


def test_bare_postgres_scheme_means_psycopg3() -> None:
    db = make_db("postgres://u:p@localhost/db")
    assert db.engine.dialect.driver == "psycopg"
    db.stop()


def test_dashboards_sample_database_is_accepted_by_start(sqlite_url: str) -> None:
    """The demo database is migrated, not create_all'ed: a run or `atb db` accepts it."""
    from atb_testkit import sample

    sample.seed(sqlite_url, scale_trades=4, scale_events=4, predictions=4)
    db = make_db(sqlite_url, auto_migrate=False)
    try:
        db.start()
        assert schema_state(db.engine).status == "current"
    finally:
        db.stop()
