"""Fixtures for the paper/live tests; the helpers live in live_helpers.py (a uniquely named
module, so `from live_helpers import ...` never picks up another directory's conftest)."""

from live_helpers import fake, session

__all__ = ["fake", "session"]
