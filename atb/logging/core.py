"""The record pipeline every source feeds: loguru calls, stdlib logging, event emitters.

    source → level gate → rate limit → redaction (+ truncation) → sinks' queues
                                                                 → record listeners

A record is a plain dict (see `make_record`); it is built once, redacted once, and then
shared read-only by every sink and listener. Sinks format and write on their own threads,
so the caller pays for building and redacting the record and for a deque append.

The state is module globals rather than an object so the hot path does no attribute
chasing; `atb.logging.setup.configure_logging` is the only writer of it.
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from atb.logging import context as _context
from atb.logging.ids import event_id
from atb.logging.redaction import Redactor, get_redactor

if TYPE_CHECKING:
    from atb.logging.sink import Sink

LEVEL_NOS: dict[str, int] = {
    "TRACE": 5,
    "DEBUG": 10,
    "INFO": 20,
    "SUCCESS": 25,
    "WARNING": 30,
    "WARN": 30,
    "ERROR": 40,
    "CRITICAL": 50,
    "FATAL": 50,
}
LEVEL_NAMES: dict[int, str] = {
    5: "TRACE",
    10: "DEBUG",
    20: "INFO",
    25: "SUCCESS",
    30: "WARNING",
    40: "ERROR",
    50: "CRITICAL",
}
# Never sampled, rate-limited or dropped: losing one hides money or risk.
CRITICAL_EVENT_TYPES = frozenset({"order_event", "risk_event", "alert_event"})
WARNING = 30

Record = dict[str, Any]
Listener = Callable[[dict[str, Any]], None]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

_EMPTY: dict[str, Any] = {}

# -- state (written by configure_logging / add_record_listener only) ---------------------
_sinks: tuple[Sink, ...] = ()
_min_level: int = 100  # no sink: nothing but listeners gets records
_listeners: tuple[Listener, ...] = ()
_redactor: Redactor | None = None
_max_len: int = 8192
_rl_enabled: bool = True
_rl_window: float = 10.0
_rl_burst: int = 10
_state_lock = threading.RLock()


def install(
    sinks: tuple[Sink, ...],
    *,
    redactor: Redactor | None,
    max_len: int,
    rate_limit: tuple[bool, float, int],
) -> tuple[Sink, ...]:
    """Swap in a new set of sinks; return the old ones (the caller flushes and closes)."""
    global _sinks, _min_level, _redactor, _max_len, _rl_enabled, _rl_window, _rl_burst
    with _state_lock:
        old = _sinks
        _redactor = redactor
        _max_len = max_len
        _rl_enabled, _rl_window, _rl_burst = rate_limit
        _sinks = sinks
        _min_level = min((s.levelno for s in sinks), default=100)
        _limiter.clear()
        return old


def sinks() -> tuple[Sink, ...]:
    return _sinks


def min_level() -> int:
    return _min_level


def redactor() -> Redactor:
    return _redactor or get_redactor()


def add_listener(fn: Listener) -> Callable[[], None]:
    global _listeners
    with _state_lock:
        _listeners = (*_listeners, fn)

    def remove() -> None:
        global _listeners
        with _state_lock:
            _listeners = tuple(f for f in _listeners if f is not fn)

    return remove


# -- the pipeline ----------------------------------------------------------------------


def emit(
    levelno: int,
    level: str,
    logger: str,
    function: str | None,
    line: int | None,
    message: str,
    event_type: str | None = None,
    event: str | None = None,
    fields: dict[str, Any] | None = None,
    exc_info: ExcInfo | None = None,
    timestamp: datetime | None = None,
) -> None:
    """Build, redact and hand one record to the sinks and listeners that want it."""
    to_sinks = levelno >= _min_level
    listeners = _listeners if (event_type is not None or levelno >= WARNING) else ()
    if not to_sinks and not listeners:
        return
    if event_type is None and _rl_enabled and not _admit(levelno, level, logger, message):
        return
    red = _redactor or get_redactor()
    msg = red.redact_text(message) if type(message) is str else red.redact_text(str(message))
    if len(msg) > _max_len:
        msg = f"{msg[:_max_len]}… [truncated {len(msg) - _max_len} chars]"
    record: Record = {
        "timestamp": timestamp or datetime.now(UTC),
        "level": level,
        "levelno": levelno,
        "logger": logger,
        "function": function,
        "line": line,
        "message": msg,
        "event_type": event_type,
        "event": event,
        "context": _redacted_context(red, logger),
        "fields": red.redact_mapping(fields) if fields else _EMPTY,
        "exception": exception_dict(exc_info, red) if exc_info is not None else None,
    }
    if to_sinks:
        critical = event_type in CRITICAL_EVENT_TYPES or levelno >= WARNING
        for sink in _sinks:
            if levelno >= sink.levelno:
                sink.put(record, critical)
    if listeners:
        _notify(listeners, record)


# Components named by the module that logs, where the package name alone is too coarse.
COMPONENT_PREFIXES: tuple[tuple[str, str], ...] = (
    ("atb.db.journal", "journal"),
    ("atb.logging.sinks", "sinks"),
    ("atb.engine.heartbeat_store", "heartbeat"),
    ("panels", "dashboards"),
)
_components: dict[str, str] = {}
_completed: dict[tuple[int, str], tuple[dict[str, Any], Any, dict[str, Any]]] = {}


def component_of(logger: str) -> str:
    """The component a logger belongs to: `atb.<package>` (journal and sinks by module),
    a library's top-level name (ccxt, sqlalchemy, tornado, bokeh) otherwise."""
    comp = _components.get(logger)
    if comp is None:
        for prefix, name in COMPONENT_PREFIXES:
            if logger == prefix or logger.startswith(prefix + "."):
                comp = name
                break
        else:
            parts = logger.split(".")
            comp = parts[1] if parts[0] == "atb" and len(parts) > 1 else parts[0] or "root"
        if len(_components) > 4096:
            _components.clear()
        _components[logger] = comp
    return comp


def _complete(ctx: dict[str, Any], logger: str) -> dict[str, Any]:
    """`ctx` plus `component` (from the logger, unless a thread set its own) and
    `session_id` (the run id): every line carries both, whoever wrote it."""
    out = dict(ctx)
    out.setdefault("component", component_of(logger))
    if "run_id" in out:
        out.setdefault("session_id", out["run_id"])
    return out


def _redacted_context(red: Redactor, logger: str = "atb") -> dict[str, Any]:
    """The record's context, completed and redacted; cached per (context dict, logger)
    because context dicts are immutable by convention. Hot path."""
    ctx = _context.current()
    key = (id(ctx), logger)
    hit = _completed.get(key)
    if hit is not None and hit[0] is ctx and hit[1] is red:
        return hit[2]
    redacted = red.redact_mapping(_complete(ctx, logger))
    if len(_completed) > 4096:
        _completed.clear()
    _completed[key] = (ctx, red, redacted)
    return redacted


def exception_dict(exc_info: ExcInfo, red: Redactor) -> dict[str, Any]:
    """Structured, redacted exception. Tracebacks are formatted without local variables
    (what loguru's `diagnose` would add), because locals are where secrets live."""
    etype, value, tb = exc_info
    try:
        text = "".join(traceback.format_exception(etype, value, tb))
    except Exception:  # a broken __str__ must not lose the record
        text = f"{getattr(etype, '__name__', etype)}: <unprintable>"
    try:
        message = str(value)
    except Exception:
        message = "<unprintable>"
    limit = _max_len * 4
    text = red.redact_text(text)
    if len(text) > limit:
        text = text[:limit] + "… [truncated]"
    return {
        "type": getattr(etype, "__qualname__", str(etype)),
        "module": getattr(etype, "__module__", None),
        "message": red.redact_text(message)[:_max_len],
        "traceback": text,
    }


# -- listeners -------------------------------------------------------------------------

_failed_listeners: set[int] = set()


def _notify(listeners: tuple[Listener, ...], record: Record) -> None:
    item = {
        "id": event_id(),  # time-ordered (UUIDv7 layout): cheap for the journal's index
        "timestamp": record["timestamp"],
        "level": record["level"],
        "logger": record["logger"],
        "message": record["message"],
        "event_type": record["event_type"],
        "name": record["event"],
        "fields": record["fields"],
        "context": record["context"],
        "exception": record["exception"],
    }
    for fn in listeners:
        try:
            fn(item)
        except Exception as exc:
            if id(fn) not in _failed_listeners:
                _failed_listeners.add(id(fn))
                internal(
                    40,
                    f"log record listener {getattr(fn, '__qualname__', fn)!r} failed: "
                    f"{type(exc).__name__}: {exc} (reported once)",
                )


def internal(levelno: int, message: str, *, exclude: Sink | None = None, **fields: Any) -> None:
    """A record about logging itself: to every healthy sink except `exclude`, never to
    listeners (a failing listener must not recurse), and to stderr if no sink is left."""
    red = _redactor or get_redactor()
    record: Record = {
        "timestamp": datetime.now(UTC),
        "level": LEVEL_NAMES.get(levelno, str(levelno)),
        "levelno": levelno,
        "logger": "atb.logging",
        "function": None,
        "line": None,
        "message": red.redact_text(message),
        "event_type": None,
        "event": None,
        "context": _redacted_context(red, "atb.logging"),
        "fields": red.redact_mapping(fields) if fields else _EMPTY,
        "exception": None,
    }
    delivered = False
    for sink in _sinks:
        if sink is exclude or sink.failed or levelno < sink.levelno:
            continue
        sink.put(record, True)
        delivered = True
    if not delivered:
        stream = sys.__stderr__
        if stream is not None:
            try:
                stream.write(f"atb.logging: {record['message']}\n")
                stream.flush()
            except Exception:  # nowhere left to report to
                pass


# -- rate limiting -----------------------------------------------------------------------

# key → [window start, count, suppressed]
_limiter: dict[tuple[int, str, str], list[float]] = {}


def _admit(levelno: int, level: str, logger: str, message: str) -> bool:
    key = (levelno, logger, message)
    now = time.monotonic()
    state = _limiter.get(key)
    if state is None:
        if len(_limiter) > 10_000:  # many distinct messages: forget old windows
            flush_rate_limits(force=True)
        _limiter[key] = [now, 1.0, 0.0]
        return True
    if now - state[0] > _rl_window:
        suppressed = state[2]
        state[0], state[1], state[2] = now, 1.0, 0.0
        if suppressed:
            _summary(key, level, int(suppressed))
        return True
    state[1] += 1
    if state[1] > _rl_burst:
        state[2] += 1
        return False
    return True


def _summary(key: tuple[int, str, str], level: str, suppressed: int) -> None:
    levelno, logger, message = key
    emit(
        levelno,
        level,
        logger,
        None,
        None,
        f"{message} [rate-limited: {suppressed} identical records suppressed in {_rl_window:g}s]",
        fields={"suppressed": suppressed, "rate_limited": True},
        # a distinct message, so the summary itself is never limited by its own key
    )


def flush_rate_limits(*, force: bool = False) -> None:
    """Emit the summary of every window that has closed (all of them if `force`)."""
    now = time.monotonic()
    for key, state in list(_limiter.items()):
        if force or now - state[0] > _rl_window:
            _limiter.pop(key, None)
            if state[2]:
                _summary(key, LEVEL_NAMES.get(key[0], str(key[0])), int(state[2]))


def flush_all(timeout: float | None = None) -> None:
    """Write out everything queued in every sink (and pending rate-limit summaries)."""
    flush_rate_limits(force=True)
    for sink in _sinks:
        sink.flush()
