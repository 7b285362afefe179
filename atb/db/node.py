"""The `db` node: one SQLAlchemy engine for the run, sessions on demand.

`start()` connects (a bad URL or unreachable server fails the run before anything trades,
with the URL's password masked), then checks the schema revision: a fresh database is
migrated when `auto_migrate` is on; an older one stops the run with "run `atb db upgrade`".
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from sqlalchemy import URL, Engine, create_engine, event
from sqlalchemy.exc import DBAPIError, NoSuchModuleError
from sqlalchemy.orm import Session, sessionmaker

from atb.config.base import NodeConfig, StrictModel, field_error
from atb.db import redacting
from atb.db.errors import BadDatabaseUrl, DatabaseUnavailable
from atb.db.redacting import json_dumps
from atb.db.startup import check_not_foreign, check_sqlite_file
from atb.db.url import DEFAULT_URL, parse_url, redact_url, sqlite_path
from atb.logging.redaction import redact_text
from atb.runtime import tuning
from atb.runtime.context import RunContext
from atb.runtime.node import Node


class SqliteSettings(StrictModel):
    """PRAGMAs applied to every SQLite connection."""

    # WAL lets the dashboards read while the journal writes.
    journal_mode: Literal["WAL", "DELETE", "TRUNCATE", "PERSIST", "MEMORY"] = "WAL"
    # NORMAL in WAL mode: a process crash loses nothing committed; power loss may drop
    # the last transactions. FULL fsyncs every commit.
    synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL"
    busy_timeout_ms: int = Field(5000, ge=0, description="wait this long for a writer lock")
    # The journal inserts random UUIDs into a unique index: a page cache larger than
    # SQLite's 2 MB default keeps that index in memory for longer runs.
    cache_size_kib: int = Field(32768, ge=0, description="page cache per connection (KiB)")
    foreign_keys: bool = True
    quick_check: bool = Field(
        True, description="refuse a file with corrupt pages at start (PRAGMA quick_check)"
    )


class DatabaseConfig(NodeConfig):
    url: str = Field(DEFAULT_URL, min_length=1, description="SQLAlchemy URL")
    pool_size: int = Field(5, ge=1)
    max_overflow: int = Field(10, ge=0)
    pool_timeout: float = Field(10.0, gt=0, description="seconds to wait for a pooled connection")
    pool_recycle: int = Field(1800, description="seconds before a connection is replaced; -1 never")
    pool_pre_ping: bool = Field(True, description="test connections on checkout (server restarts)")
    connect_timeout: float = Field(5.0, gt=0, description="seconds to establish a connection")
    echo: bool = False
    auto_migrate: bool = Field(True, description="migrate an empty database at start")
    adopt: bool = Field(
        False, description="add atb's tables to a database that holds another application's"
    )
    allow_memory: bool = Field(
        False, description="accept sqlite:// (in-memory: every record is lost at exit)"
    )
    sqlite: SqliteSettings = Field(default_factory=SqliteSettings)

    @model_validator(mode="after")
    def _not_in_memory(self) -> DatabaseConfig:
        if self.allow_memory:
            return self
        try:
            url = parse_url(self.url)
        except BadDatabaseUrl:
            return self  # reported with its reason when the node starts
        if url.get_backend_name() == "sqlite" and sqlite_path(url) is None:
            raise field_error(
                "url",
                f"{self.url} is an in-memory database: the run's records are gone when it "
                "exits; use a file (sqlite:///atb.db), or set db.allow_memory=true",
            )
        return self


def build_engine(config: DatabaseConfig) -> Engine:
    """An engine for `config.url`; nothing connects yet. Raises BadDatabaseUrl."""
    url = parse_url(config.url)
    backend = url.get_backend_name()
    kwargs: dict[str, Any] = {"echo": config.echo, "json_serializer": json_dumps}
    connect_args: dict[str, Any] = {}
    if backend == "sqlite":
        connect_args["timeout"] = config.sqlite.busy_timeout_ms / 1000
        # Sessions are handed between threads (journal writer, health checks).
        connect_args["check_same_thread"] = False
        if sqlite_path(url) is not None:
            kwargs.update(pool_size=config.pool_size, max_overflow=config.max_overflow)
    else:
        kwargs.update(
            pool_size=config.pool_size,
            max_overflow=config.max_overflow,
            pool_timeout=config.pool_timeout,
            pool_recycle=config.pool_recycle,
            pool_pre_ping=config.pool_pre_ping,
        )
        if backend == "postgresql":
            # libpq takes whole seconds and treats values below 2 as 2.
            connect_args["connect_timeout"] = max(2, round(config.connect_timeout))
            connect_args["application_name"] = "atb"
    try:
        engine = create_engine(url, connect_args=connect_args, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        if backend == "postgresql":
            raise BadDatabaseUrl(
                f"db.url {redact_url(url)}: the PostgreSQL driver is not installed ({exc}); "
                "install it with: pip install 'atb[postgres]'"
            ) from exc
        raise BadDatabaseUrl(
            f"db.url {redact_url(url)}: driver '{url.drivername}' is not available ({exc}); "
            "use sqlite:///path.db or postgresql+psycopg://user:pass@host:5432/db"
        ) from exc
    if backend == "sqlite":
        _install_sqlite_pragmas(engine, config.sqlite)
    redacting.install(engine)
    return engine


def _install_sqlite_pragmas(engine: Engine, settings: SqliteSettings) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA journal_mode={settings.journal_mode}")
        cur.execute(f"PRAGMA synchronous={settings.synchronous}")
        cur.execute(f"PRAGMA busy_timeout={settings.busy_timeout_ms}")
        if settings.cache_size_kib:
            cur.execute(f"PRAGMA cache_size=-{settings.cache_size_kib}")
        cur.execute(f"PRAGMA foreign_keys={'ON' if settings.foreign_keys else 'OFF'}")
        cur.close()


def connect_check(engine: Engine) -> None:
    """Open one connection or raise DatabaseUnavailable naming the (redacted) URL."""
    url = engine.url
    path = sqlite_path(url)
    if path is not None:
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
        if url.password:
            reason = redact_text(reason, [str(url.password)])
        raise DatabaseUnavailable(
            f"cannot connect to database {redact_url(url)}: {reason}"
        ) from None


class Database(Node[DatabaseConfig]):
    def __init__(self, config: NodeConfig, ctx: RunContext, **needs: Any) -> None:
        super().__init__(config, ctx)
        self.engine: Engine = build_engine(self.config)
        self.url: URL = self.engine.url
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def redacted_url(self) -> str:
        return redact_url(self.url)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def start(self) -> None:
        from atb.db.migrate import check_schema

        # before the first pooled connection: its connect hook switches SQLite to WAL
        check_sqlite_file(
            self.engine, quick_check=self.config.sqlite.quick_check, adopt=self.config.adopt
        )
        connect_check(self.engine)
        check_not_foreign(self.engine, adopt=self.config.adopt)
        check_schema(self.engine, auto_migrate=self.config.auto_migrate)
        if self.engine.dialect.name == "sqlite":
            tuning.fast_sqlite_binding()  # the journal's and the recorder's bulk inserts

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def ping(self) -> None:
        """For health checks: raises DatabaseUnavailable when the server is unreachable."""
        connect_check(self.engine)

    def stop(self) -> None:
        self.engine.dispose()
