"""Database errors whose message is the whole story: no stack trace needed to act on them.

Every message shows the URL with its password masked; the runner prints it as
`atb: error: node 'db' failed to start: ...`.
"""

from __future__ import annotations

_CONTENT_ERRORS = {"DataError", "IntegrityError", "ProgrammingError", "NotSupportedError"}


class DatabaseError(Exception):
    """Base class; `str(exc)` is safe to print (URL passwords masked)."""


class BadDatabaseUrl(DatabaseError):
    """db.url cannot be parsed or names a driver that is not installed."""


class DatabaseUnavailable(DatabaseError):
    """The server could not be reached or refused the connection."""


class SchemaMismatch(DatabaseError):
    """The database's migration revision is not the one this code expects."""


class RecordLogError(Exception):
    """A record log that cannot be applied; `str()` is the one line an operator needs."""


class RecordLogBusy(RecordLogError):
    """The file is locked: a running session owns it and applies it itself."""


def is_unavailable(exc: BaseException) -> bool:
    """The database is unreachable (retry later), as opposed to rejecting the rows.

    Writers that use the driver's cursor directly (COPY) see raw DBAPI exceptions too; they
    are classified by their PEP 249 class names.
    """
    # Imported here: this module is read by CLIs that never load SQLAlchemy; whoever
    # classifies a database error has long imported it.
    from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return isinstance(exc, OperationalError | InterfaceError)
    if isinstance(exc, DisconnectionError | TimeoutError | OSError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"OperationalError", "InterfaceError"}:
        return True
    return not names & _CONTENT_ERRORS
