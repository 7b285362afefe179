"""Structured event emitters used by data and engine code.

The real emitters live in `atb.logging.events` (seed names: log_engine_event, log_data_event,
log_order_event, log_risk_event, log_decision_event). This indirection lets the engine run
before, or without, that package: the fallback logs the same event names and fields through
loguru, so swapping in the real module changes no call site.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

EventFn = Callable[..., Any]


def _fallback(event_type: str) -> EventFn:
    def emit(name: str, level: str = "INFO", **fields: Any) -> None:
        from loguru import logger

        logger.bind(event_type=event_type, event=name, **fields).log(
            level, "{} {}", name, " ".join(f"{k}={v}" for k, v in fields.items())
        )

    return emit


try:  # pragma: no cover - which branch runs depends on what is installed
    from atb.logging.events import (  # type: ignore[import-not-found,unused-ignore]
        log_data_event,
        log_decision_event,
        log_engine_event,
        log_order_event,
        log_risk_event,
    )
except ImportError:  # pragma: no cover
    log_engine_event = _fallback("engine")
    log_data_event = _fallback("data")
    log_order_event = _fallback("order")
    log_risk_event = _fallback("risk")
    log_decision_event = _fallback("decision")

__all__ = [
    "log_data_event",
    "log_decision_event",
    "log_engine_event",
    "log_order_event",
    "log_risk_event",
]
