"""Structured event emitters used by the backtest, paper and live engines.

    log_order_event("order_rejected", symbol="BTCUSDT", reason="insufficient balance")

emits a record with `event_type="order_event"`, `event="order_rejected"` and the fields,
at INFO unless `level=` says otherwise. `message=` sets the human text (default: the
event name); `exc_info=` attaches an exception. Order, risk and alert events are never
rate-limited or dropped. Every event also reaches the record listeners (the DB journal,
the alert router), whatever the sink levels.

Event names in use: engine_start, engine_stop, backtest_start, backtest_end, heartbeat,
open_position, close_position, order_submitted, order_filled, order_rejected,
order_cancelled, dynamic_risk_adjustment, max_drawdown_breach, no_data, stale_data,
data_gap, decision.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol

from atb.logging import core

_LEVELS = core.LEVEL_NOS
_NAMES = core.LEVEL_NAMES
# level names and numbers → number, so the gate below is a single dict lookup
_GATE: dict[str | int, int] = {n: n for n in range(1, 101)}
_GATE.update(_LEVELS)


def _emit(
    event_type: str,
    name: str,
    levelno: int,
    message: str | None,
    exc_info: BaseException | bool | None,
    fields: dict[str, Any],
    depth: int,
) -> None:
    frame = sys._getframe(depth)
    exc = None
    if exc_info:
        if isinstance(exc_info, BaseException):
            exc = (type(exc_info), exc_info, exc_info.__traceback__)
        else:
            info = sys.exc_info()
            exc = info if info[0] is not None else None
    core.emit(
        levelno,
        _NAMES.get(levelno) or f"Level {levelno}",
        frame.f_globals.get("__name__", "?"),
        frame.f_code.co_name,
        frame.f_lineno,
        message if message is not None else name,
        event_type,
        name,
        fields,
        exc,
    )


def _levelno(level: str | int) -> int:
    if type(level) is int:
        return level
    try:
        return _LEVELS[level]  # type: ignore[index]
    except KeyError:
        return _LEVELS.get(str(level).upper(), 20)


class EventEmitter(Protocol):
    def __call__(
        self,
        name: str,
        /,
        *,
        level: str | int = ...,
        message: str | None = None,
        exc_info: BaseException | bool | None = None,
        **fields: Any,
    ) -> None: ...


def log_event(
    event_type: str,
    name: str,
    /,
    *,
    level: str | int = "INFO",
    message: str | None = None,
    exc_info: BaseException | bool | None = None,
    **fields: Any,
) -> None:
    """Emit one event of any type (the typed emitters below are shorthands)."""
    levelno = _GATE.get(level) or _levelno(level)
    if levelno < core._min_level and not core._listeners:
        return
    _emit(event_type, name, levelno, message, exc_info, fields, 2)


def _emitter(function: str, event_type: str, doc: str, default: str = "INFO") -> EventEmitter:
    # Each emitter gates on the level itself, before anything else: a filtered-out DEBUG
    # event then costs one call and two comparisons (no frame lookup, no dict copies).
    def emit(
        name: str,
        /,
        *,
        level: str | int = default,
        message: str | None = None,
        exc_info: BaseException | bool | None = None,
        **fields: Any,
    ) -> None:
        levelno = _GATE.get(level) or _levelno(level)
        if levelno < core._min_level and not core._listeners:
            return
        _emit(event_type, name, levelno, message, exc_info, fields, 2)

    emit.__name__ = emit.__qualname__ = function
    emit.__doc__ = doc
    return emit


log_engine_event = _emitter(
    "log_engine_event",
    "engine_event",
    "engine_start, backtest_start, heartbeat (every N loop steps), engine_stop, …",
)
log_order_event = _emitter(
    "log_order_event",
    "order_event",
    "open_position, close_position, order_filled, order_rejected (reason=…), …",
)
log_risk_event = _emitter(
    "log_risk_event", "risk_event", "dynamic_risk_adjustment, max_drawdown_breach, …"
)
log_data_event = _emitter("log_data_event", "data_event", "no_data, stale_data, data_gap, …")
log_db_event = _emitter(
    "log_db_event", "db_event", "db_connected, db_connection_failed, journal_backlog, …"
)
log_decision_event = _emitter(
    "log_decision_event", "decision_event", "Strategy decisions: signal, confidence, chosen action."
)
log_alert_event = _emitter(
    "log_alert_event",
    "alert_event",
    "Alerts raised by the alert router (never rate-limited).",
    default="WARNING",
)
