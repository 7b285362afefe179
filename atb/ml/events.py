"""Emit ML events (model_loaded, model_trained, look-ahead warnings) as structured logs.

They are engine events (`atb.logging.events.log_engine_event`); the import is deferred
so that importing the ML code does not set up logging.
"""

from __future__ import annotations

from typing import Any


def log_ml_event(name: str, level: str = "INFO", **fields: Any) -> None:
    from atb.logging.events import log_engine_event

    log_engine_event(name, level=level, **fields)
