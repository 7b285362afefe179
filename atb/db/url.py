"""Parse, normalise and redact database URLs."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from atb.db.errors import BadDatabaseUrl
from atb.logging.redaction import redact_text

DEFAULT_URL = "sqlite:///atb.db"
# Anything between "//user:" and "@" is a password, even in a URL too broken to parse.
_LOOSE_PASSWORD = re.compile(r"(//[^:/@\s]*:)[^@\s]*@")


def _mask(text: str) -> str:
    return _LOOSE_PASSWORD.sub(r"\1***@", redact_text(text))


def parse_url(url: str | URL) -> URL:
    """`url` as a SQLAlchemy URL; bare `postgres://`/`postgresql://` mean psycopg 3.

    Hosting providers hand out `postgres://...` (DATABASE_URL); SQLAlchemy's default
    PostgreSQL driver is psycopg2, which atb does not install, so those select psycopg 3.
    """
    if isinstance(url, URL):
        parsed = url
    else:
        try:
            parsed = make_url(url.strip())
        except (ArgumentError, ValueError) as exc:
            raise BadDatabaseUrl(
                f"db.url is not a database URL: '{_mask(str(url))}' "
                "(expected e.g. sqlite:///atb.db or postgresql+psycopg://user:pass@host/db)"
            ) from exc
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def redact_url(url: str | URL) -> str:
    """The URL with its password shown as `***`; never raises."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return _mask(str(url))


def sqlite_path(url: URL) -> str | None:
    """The database file of a SQLite URL; None for in-memory or other dialects."""
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file::memory:"):
        return None
    return database


def spill_dir() -> Path:
    """Where spill files of server databases live: $ATB_SPILL_DIR, else
    $XDG_CACHE_HOME/atb/spill, else ~/.cache/atb/spill."""
    explicit = os.environ.get("ATB_SPILL_DIR")
    if explicit:
        return Path(explicit).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache).expanduser() / "atb" / "spill"


def database_key(url: URL) -> str:
    """A short, stable, secret-free name for the database `url` points at.

    The sha256 of the redacted URL reduced to backend, user, host, port and database:
    the driver (`postgres://` vs `postgresql+psycopg://`), the password and query options
    (sslmode, ...) do not change which database it is.
    """
    identity = url.set(drivername=url.get_backend_name(), password=None, query={})
    return hashlib.sha256(redact_url(identity).encode()).hexdigest()[:16]


def default_spill_path(url: URL, output_dir: str | Path | None = None) -> Path:
    """The journal's spill file for `url` when `journal.spill_path` is not set.

    Stable per database, so the next run on the same database replays what an earlier
    one could not write: `<db file>.journal.jsonl` for a SQLite file, and
    `spill_dir()/<database_key>.jsonl` for a server (a run's output dir is new every run,
    so a spill file there would wait for `atb db replay --spill-file`). An in-memory SQLite
    database dies with its process: its spill file stays in the run's output dir.
    """
    db_file = sqlite_path(url)
    if db_file is not None:
        path = Path(db_file).expanduser()
        return path.with_name(path.name + ".journal.jsonl")
    if url.get_backend_name() == "sqlite":
        return Path(output_dir or Path.cwd()) / "journal-spill.jsonl"
    return spill_dir() / f"{url.get_backend_name()}-{database_key(url)}.jsonl"


def default_record_log_dir(url: URL, output_dir: str | Path | None = None) -> Path:
    """Where paper/live sessions on `url` keep their write-ahead record logs when
    `live.record_log_dir` is not set: beside the journal's spill file for this database."""
    spill = default_spill_path(url, output_dir)
    return spill.with_name(spill.name.removesuffix(".jsonl") + ".records")
