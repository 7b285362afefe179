"""Structured event emitters used by data and engine code.

The emitters are `atb.logging.events`' (seed names: log_engine_event, log_data_event,
log_order_event, log_risk_event, log_decision_event); this module keeps the import path
the engine, data and exchange modules use.
"""

from __future__ import annotations

from atb.logging.events import (
    log_data_event,
    log_decision_event,
    log_engine_event,
    log_order_event,
    log_risk_event,
)

__all__ = [
    "log_data_event",
    "log_decision_event",
    "log_engine_event",
    "log_order_event",
    "log_risk_event",
]
