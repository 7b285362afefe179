"""Fixtures for the core tests; shared helpers live in core_helpers.py."""

from core_helpers import atb_run

__all__ = ["atb_run"]
