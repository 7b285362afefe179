"""Database errors whose message is the whole story: no stack trace needed to act on them.

Every message shows the URL with its password masked; the runner prints it as
`atb: error: node 'db' failed to start: ...`.
"""

from __future__ import annotations


class DatabaseError(Exception):
    """Base class; `str(exc)` is safe to print (URL passwords masked)."""


class BadDatabaseUrl(DatabaseError):
    """db.url cannot be parsed or names a driver that is not installed."""


class DatabaseUnavailable(DatabaseError):
    """The server could not be reached or refused the connection."""


class SchemaMismatch(DatabaseError):
    """The database's migration revision is not the one this code expects."""
