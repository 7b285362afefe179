"""Emit ML events (model_loaded, model_trained, look-ahead warnings) as structured logs.

Uses `atb.logging.events.log_engine_event` when that package is present; otherwise the
same event name and fields go through loguru, so call sites never change.
"""

from __future__ import annotations

from typing import Any


def log_ml_event(name: str, level: str = "INFO", **fields: Any) -> None:
    try:
        from atb.logging.events import (  # type: ignore[import-not-found,unused-ignore]
            log_engine_event,
        )
    except ImportError:
        from loguru import logger

        logger.bind(event_type="engine", event=name, **fields).log(
            level, "{} {}", name, " ".join(f"{k}={v}" for k, v in fields.items())
        )
        return
    log_engine_event(name, **fields)
