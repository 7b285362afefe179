"""Checks on a database before atb writes a byte to it (or changes how it is journalled).

* a SQLite file with corrupt pages is refused (`PRAGMA quick_check`), one line;
* a non-empty database without atb's migration history (another application's tables)
  is refused unless adoption is asked for (`atb db upgrade --adopt`, or
  `db.adopt=true` for a run);

The SQLite checks run on a plain connection, before the engine's connect hook applies
`journal_mode=WAL`: a database atb refuses keeps its journal mode.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, inspect
from sqlalchemy.exc import DBAPIError

from atb.db.errors import DatabaseError, SchemaMismatch
from atb.db.url import redact_url, sqlite_path

# Tables a database may hold that say nothing about who owns it.
_NEUTRAL = frozenset({"alembic_version", "sqlite_sequence", "sqlite_stat1", "sqlite_stat4"})
_SHOWN = 5


class CorruptDatabase(DatabaseError):
    """The database file is damaged or is not a SQLite database at all."""


def atb_tables() -> frozenset[str]:
    from atb.db.models import Base

    return frozenset(Base.metadata.tables)


def foreign_tables(names: set[str] | frozenset[str]) -> list[str]:
    """Tables that are neither atb's nor bookkeeping."""
    return sorted(n for n in names if n not in atb_tables() and n not in _NEUTRAL)


def refusal(where: str, tables: list[str]) -> str:
    shown = ", ".join(tables[:_SHOWN]) + (
        f", … ({len(tables)} tables)" if len(tables) > _SHOWN else ""
    )
    return (
        f"database {where} is not empty and has no atb history: it holds another "
        f"application's tables ({shown}); atb will not write into it. Point db.url at a new "
        "database, or add atb's tables to this one with `atb db upgrade --adopt`"
    )


# SQLite files this process (or the sweep launcher it was forked from) found intact. The
# check reads the whole file: a sweep's jobs and its summary reopen the database the
# launcher checked at start, and re-reading a file that grows by each job's run store made
# the sweep's checks quadratic in its length (0.34 s per job at 170 MB).
_checked: set[tuple[str, int, int]] = set()
_checked_new: set[str] = set()


def _identity(file: Path) -> tuple[str, int, int]:
    """A file by path and inode: a backup restored over the path is checked again."""
    st = file.stat()
    return str(file.resolve()), st.st_dev, st.st_ino


def check_sqlite_file(engine: Engine, *, quick_check: bool, adopt: bool) -> None:
    """Refuse a corrupt or foreign SQLite file; a missing or empty file passes. The
    integrity check (`quick_check`) runs once per file per process tree, see `_checked`."""
    path = sqlite_path(engine.url)
    if path is None:
        return
    file = Path(path).expanduser()
    if not file.is_file() or file.stat().st_size == 0:
        # Created by this process's migration: intact. Remembered by path only, since the
        # file may not exist yet; a later replacement at the path has another inode.
        _checked_new.add(str(file.resolve()))
        return
    where = redact_url(engine.url)
    try:
        conn = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    except sqlite3.Error as exc:
        raise CorruptDatabase(f"database {where}: cannot open {file}: {exc}") from None
    try:
        key = _identity(file)
        if key[0] in _checked_new:  # the file this process created, first seen written
            _checked_new.discard(key[0])
            _checked.add(key)
        if quick_check and key not in _checked:
            rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check").fetchall()]
            if rows != ["ok"]:
                # one line: the first problem and how many more
                problems = [
                    line.strip()
                    for row in rows
                    for line in row.splitlines()
                    if line.strip() and not line.startswith("***")
                ] or ["no answer"]
                more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
                raise CorruptDatabase(
                    f"database {where} is damaged ({file.name}: {problems[0]}{more}): "
                    "restore it from a backup or point db.url at a new file"
                )
            _checked.add(key)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise CorruptDatabase(
            f"database {where} cannot be read ({file}: {exc}): it is damaged or not a "
            "SQLite database; restore it from a backup or point db.url at a new file"
        ) from None
    finally:
        conn.close()
    if not adopt and "alembic_version" not in names and not (names & atb_tables()):
        tables = foreign_tables(names)
        if tables:
            raise SchemaMismatch(refusal(where, tables))


def check_not_foreign(engine: Engine, *, adopt: bool) -> None:
    """The same ownership check for server databases (their journal mode is not at stake)."""
    if adopt or engine.url.get_backend_name() == "sqlite":
        return
    try:
        with engine.connect() as conn:
            names = set(inspect(conn).get_table_names())
    except DBAPIError:
        return  # connect_check reports an unreachable server
    if "alembic_version" in names or names & atb_tables():
        return
    tables = foreign_tables(names)
    if tables:
        raise SchemaMismatch(refusal(redact_url(engine.url), tables))
