"""Read-only database access for the dashboards.

A dashboard never writes: SQLite is opened with `mode=ro` (the file must exist, and a
stray write fails instead of creating tables in the wrong place), PostgreSQL sessions
start with `default_transaction_read_only=on`. One engine per URL per process, shared by
every browser session.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Engine, create_engine, event, inspect
from sqlalchemy.exc import SQLAlchemyError

from atb.db.url import parse_url, redact_url, sqlite_path

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


class DatabaseMissing(Exception):
    """The configured database does not exist yet (nothing has run)."""


def readonly_url(url: str | URL) -> URL:
    parsed = parse_url(url)
    path = sqlite_path(parsed)
    if path is None:
        return parsed
    # SQLite's URI filename form is the only way to pass mode=ro through pysqlite.
    absolute = Path(path).expanduser().resolve()
    return parsed.set(database=f"file:{absolute}", query={"mode": "ro", "uri": "true"})


def readonly_engine(url: str | URL) -> Engine:
    """A shared read-only engine; raises DatabaseMissing for a SQLite file that is absent."""
    parsed = parse_url(url)
    path = sqlite_path(parsed)
    if path is not None and not Path(path).expanduser().exists():
        raise DatabaseMissing(f"no database at {Path(path).expanduser()}")
    key = parsed.render_as_string(hide_password=False)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = _build(parsed)
            _engines[key] = engine
        return engine


def connect_args_for(url: URL) -> dict[str, Any]:
    """DBAPI connect arguments that make every connection read-only."""
    backend = url.get_backend_name()
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args["check_same_thread"] = False
        connect_args["timeout"] = 5
    elif backend == "postgresql":
        connect_args["options"] = "-c default_transaction_read_only=on"
        connect_args["application_name"] = "atb-dashboards"
        connect_args["connect_timeout"] = 5
    return connect_args


def _build(url: URL) -> Engine:
    backend = url.get_backend_name()
    engine = create_engine(
        readonly_url(url), connect_args=connect_args_for(url), pool_pre_ping=True
    )
    if backend == "sqlite":

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # Belt and braces on top of mode=ro; also lets readers wait for the writer.
            cur.execute("PRAGMA query_only=ON")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    return engine


def table_names(engine: Engine) -> set[str]:
    try:
        return set(inspect(engine).get_table_names())
    except SQLAlchemyError:
        return set()


def describe(url: str | URL) -> str:
    return redact_url(parse_url(url))


def dispose_all() -> None:
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()
