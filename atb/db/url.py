"""Parse, normalise and redact database URLs."""

from __future__ import annotations

import re

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from atb.config.secrets import redact_text
from atb.db.errors import BadDatabaseUrl

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
