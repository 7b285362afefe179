"""Alembic, configured in code: the revisions ship inside the package (atb/db/migrations).

`check_schema` is what `Database.start()` runs: a fresh database is migrated (when
auto_migrate is on), a database at the head revision passes, anything else stops the run
with a message that says what to do instead of a stack trace.

Alembic is imported only when it is needed (a migration, a revision that is not the head,
an inconclusive check): a database already at `HEAD_REVISION` is recognised with one plain
query, and a brand-new SQLite file gets the models' schema stamped at the head
(`create_fresh_sqlite`), which keeps the default run's start-up free of Alembic, Mako and
Pygments (~0.4 s of a first run). tests/db/test_fresh_sqlite.py checks that schema equals
the migrated one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, Engine, inspect
from sqlalchemy.exc import DBAPIError

from atb.db.errors import SchemaMismatch
from atb.db.migrations import HEAD_REVISION
from atb.db.url import redact_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation: a '%' in a URL-encoded password must be doubled.
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The head as Alembic computes it from versions/ (HEAD_REVISION must equal it)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "atb ships at least one migration"
    return head


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


@dataclass(frozen=True)
class SchemaState:
    current: str | None
    head: str
    has_tables: bool

    @property
    def status(self) -> str:
        """fresh | current | behind | ahead | unversioned."""
        if self.current is None:
            return "unversioned" if self.has_tables else "fresh"
        if self.current == self.head:
            return "current"
        return "behind" if self.current in known_revisions() else "ahead"


def schema_state(engine: Engine) -> SchemaState:
    from atb.db.models import Base

    with engine.connect() as conn:
        current = current_revision(conn)
        existing = set(inspect(conn).get_table_names())
    return SchemaState(
        current=current,
        head=head_revision(),
        has_tables=bool(existing & set(Base.metadata.tables)),
    )


def upgrade(engine: Engine, revision: str = "head") -> None:
    from alembic import command

    with engine.begin() as conn:
        command.upgrade(alembic_config(connection=conn), revision)


def downgrade(engine: Engine, revision: str) -> None:
    from alembic import command

    with engine.begin() as conn:
        command.downgrade(alembic_config(connection=conn), revision)


def is_current(engine: Engine) -> bool:
    """True when the database is certainly at HEAD_REVISION: one plain query, no Alembic.

    False means "not known": no alembic_version table (fresh or unversioned), another
    revision, several rows (branches), or any error; the caller then asks Alembic.
    """
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
    except DBAPIError:
        return False
    return len(rows) == 1 and rows[0][0] == HEAD_REVISION


def create_fresh_sqlite(engine: Engine) -> bool:
    """Create the head schema in a SQLite file that has no tables at all, without Alembic.

    One write transaction (BEGIN IMMEDIATE, so parallel sweep jobs queue on the lock): the
    models' tables, then `alembic_version` at HEAD_REVISION, as `upgrade` leaves them.
    False when the file is not empty once the lock is held (another job got there first);
    the caller then checks it the usual way.
    """
    from atb.db.models import Base

    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            if inspect(conn).get_table_names():
                conn.rollback()
                return False
            Base.metadata.create_all(conn)
            conn.exec_driver_sql(
                "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))"
            )
            conn.exec_driver_sql(
                "INSERT INTO alembic_version (version_num) VALUES (?)", (HEAD_REVISION,)
            )
            conn.commit()
    except DBAPIError:
        return False  # nothing committed: the usual path says what is wrong
    return True


def check_schema(engine: Engine, auto_migrate: bool) -> SchemaState:
    """Migrate a fresh database or raise SchemaMismatch; returns the final state."""
    if is_current(engine):
        return SchemaState(current=HEAD_REVISION, head=HEAD_REVISION, has_tables=True)
    if auto_migrate and engine.dialect.name == "sqlite" and create_fresh_sqlite(engine):
        return SchemaState(current=HEAD_REVISION, head=HEAD_REVISION, has_tables=True)
    state = schema_state(engine)
    where = redact_url(engine.url)
    status = state.status
    if status == "current":
        return state
    if status == "fresh":
        if not auto_migrate:
            raise SchemaMismatch(
                f"database {where} is empty and db.auto_migrate is false: run `atb db upgrade`"
            )
        try:
            upgrade(engine)
        except Exception:
            # Another process (a multirun's parallel jobs) may have migrated it meanwhile.
            state = schema_state(engine)
            if state.status == "current":
                return state
            raise
        return schema_state(engine)
    if status == "behind":
        raise SchemaMismatch(
            f"database {where} is at revision {state.current}, code expects {state.head}: "
            "run `atb db upgrade`"
        )
    if status == "ahead":
        raise SchemaMismatch(
            f"database {where} is at revision {state.current}, which this version of atb does "
            f"not know (it expects {state.head}): the database was migrated by a newer atb"
        )
    raise SchemaMismatch(
        f"database {where} has atb tables but no migration history (alembic_version): "
        "it was not created by `atb db upgrade`; back it up and start from an empty database"
    )
