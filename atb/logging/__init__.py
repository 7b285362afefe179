"""Structured logging: sinks from config, log context, event emitters, redaction.

Imports are lazy so `import atb.logging` stays cheap for `atb --help`:

    from atb.logging import configure_logging, log_order_event, use_context
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "configure_logging": "atb.logging.setup",
    "flush": "atb.logging.setup",
    "shutdown": "atb.logging.setup",
    "sink_health": "atb.logging.setup",
    "read_env": "atb.logging.setup",
    "set_context": "atb.logging.context",
    "update_context": "atb.logging.context",
    "clear_context": "atb.logging.context",
    "get_context": "atb.logging.context",
    "use_context": "atb.logging.context",
    "set_run_context": "atb.logging.context",
    "ContextThread": "atb.logging.context",
    "spawn": "atb.logging.context",
    "log_event": "atb.logging.events",
    "log_engine_event": "atb.logging.events",
    "log_order_event": "atb.logging.events",
    "log_risk_event": "atb.logging.events",
    "log_data_event": "atb.logging.events",
    "log_db_event": "atb.logging.events",
    "log_decision_event": "atb.logging.events",
    "log_alert_event": "atb.logging.events",
    "add_record_listener": "atb.logging.hooks",
    "Redactor": "atb.logging.redaction",
    "get_redactor": "atb.logging.redaction",
}

__all__ = [
    "ContextThread",
    "Redactor",
    "add_record_listener",
    "clear_context",
    "configure_logging",
    "flush",
    "get_context",
    "get_redactor",
    "log_alert_event",
    "log_data_event",
    "log_db_event",
    "log_decision_event",
    "log_engine_event",
    "log_event",
    "log_order_event",
    "log_risk_event",
    "read_env",
    "set_context",
    "set_run_context",
    "shutdown",
    "sink_health",
    "spawn",
    "update_context",
    "use_context",
]

if TYPE_CHECKING:
    from atb.logging.context import (
        ContextThread,
        clear_context,
        get_context,
        set_context,
        set_run_context,
        spawn,
        update_context,
        use_context,
    )
    from atb.logging.events import (
        log_alert_event,
        log_data_event,
        log_db_event,
        log_decision_event,
        log_engine_event,
        log_event,
        log_order_event,
        log_risk_event,
    )
    from atb.logging.hooks import add_record_listener
    from atb.logging.redaction import Redactor, get_redactor
    from atb.logging.setup import configure_logging, flush, read_env, shutdown, sink_health


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'atb.logging' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
