"""What an API read can fail with, apart from a bad request: kept free of SQLAlchemy so the
health server's process starts serving before the database layer is imported."""

from __future__ import annotations


class RunNotFound(LookupError):
    """No run matches: the API answers 404."""


class DatabaseUnavailable(RuntimeError):
    """The database did not answer the read: the API answers 503 with this one line."""
