"""Row encoding: a log record or emit() event -> one `system_events` row tuple.

The journal writes rows as plain tuples in `COLUMNS` order, straight to the DBAPI (see
atb.db.bulk): SQLAlchemy's per-row parameter processing would cost more than the insert.
The same tuples, as JSON arrays, are the lines of the spill file.
"""

from __future__ import annotations

import contextlib
import json
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import Table

from atb.db.bulk import Row, sqlite_timestamp
from atb.db.models.system_events import EventType, Severity, SystemEvent
from atb.db.redacting import json_dumps
from atb.logging.ids import event_id
from atb.logging.redaction import Redactor

__all__ = [
    "COLUMNS", "TABLE", "Row", "RowBuilder", "event_type_of", "format_exception",
    "record_to_row", "redact_row", "row_as_dict", "row_from_json", "row_to_json",
    "sanitize_row", "sqlite_timestamp",
]  # fmt: skip

# Event names whose seed event_type is more specific than their emitter's family.
_NAMED_TYPES = {
    "engine_start": EventType.ENGINE_START,
    "engine_started": EventType.ENGINE_START,
    "engine_stop": EventType.ENGINE_STOP,
    "engine_stopped": EventType.ENGINE_STOP,
    "strategy_change": EventType.STRATEGY_CHANGE,
    "strategy_changed": EventType.STRATEGY_CHANGE,
    "model_update": EventType.MODEL_UPDATE,
    "model_updated": EventType.MODEL_UPDATE,
    "model_loaded": EventType.MODEL_UPDATE,  # the model a run trades with (atb.ml.events)
    "balance_adjustment": EventType.BALANCE_ADJUSTMENT,
    "alert": EventType.ALERT,
}
_FAMILIES = {"engine", "order", "risk", "data", "decision", "db"}
_TYPES = {t.value for t in EventType}
_SEVERITIES = {s.value for s in Severity}
TABLE: Table = SystemEvent.__table__  # type: ignore[assignment]

COLUMNS = (
    "event_uuid", "timestamp", "event_type", "severity", "message", "name", "logger",
    "details", "context", "component", "strategy", "symbol", "error_code", "stack_trace",
    "alert_sent", "alert_method", "session_id",
)  # fmt: skip
_TS = 1
# Column widths, so an over-long value is truncated instead of failing a PostgreSQL batch.
_WIDTHS = {c.name: getattr(c.type, "length", None) for c in TABLE.columns}
# The stdlib's C-accelerated encoder without json.dumps' per-call keyword handling: the
# fallback for what orjson refuses (non-str keys, ints beyond 64 bits, ...).
_json_encode = json.JSONEncoder(
    separators=(",", ":"), default=str, check_circular=False, ensure_ascii=False
).encode
_dumps = orjson.dumps
_ORJSON_OPTS = orjson.OPT_SERIALIZE_NUMPY  # numpy scalars/arrays as numbers, not strings


def _encode(value: Any) -> str:
    """Compact JSON text of an event's details/context (orjson: ~5x the stdlib's speed).

    Anything without a JSON form becomes its str(), like the stdlib's `default=str`;
    NaN/inf become null (PostgreSQL's jsonb rejects them).
    """
    try:
        return _dumps(value, default=str, option=_ORJSON_OPTS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return _json_encode(value)


def _text(value: Any, column: str) -> str | None:
    if value is None:
        return None
    text = value if type(value) is str else str(value)
    if "\x00" in text:  # PostgreSQL text cannot hold NUL
        text = text.replace("\x00", "\\0")
    width = _WIDTHS[column]
    return text[:width] if width and len(text) > width else text


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return _timestamp(datetime.fromisoformat(value))
    return datetime.now(UTC)


def event_type_of(record: Mapping[str, Any], severity: str) -> str:
    """The seed's event_type: explicit, else by event name, emitter family, then level.

    atb.logging names families `engine_event`, `order_event`, ...; emit() callers may pass
    a seed type (`TEST`, `ALERT`, ...) directly.
    """
    explicit = record.get("event_type")
    family = None
    if isinstance(explicit, str):
        family = explicit.lower().removesuffix("_event")
        upper = explicit.upper()
        if upper in _TYPES and family not in _FAMILIES:
            return upper
    name = record.get("name")
    if isinstance(name, str) and name.lower() in _NAMED_TYPES:
        return _NAMED_TYPES[name.lower()].value
    if family == "engine" and isinstance(name, str):
        # backtest_start / live_started / paper_stop ...: the engine's own life cycle.
        if name.endswith(("_start", "_started")):
            return EventType.ENGINE_START.value
        if name.endswith(("_end", "_stop", "_stopped", "_finished")):
            return EventType.ENGINE_STOP.value
    if family in _FAMILIES:
        return str(family).upper()
    if family == "alert":
        return EventType.ALERT.value
    if severity in ("ERROR", "CRITICAL"):
        return EventType.ERROR.value
    if severity == "WARNING":
        return EventType.WARNING.value
    return EventType.INFO.value


def _stack_trace(record: Mapping[str, Any]) -> str | None:
    if record.get("stack_trace"):
        return str(record["stack_trace"])
    exc = record.get("exception")
    if not exc:
        return None
    if isinstance(exc, Mapping):
        for key in ("traceback", "stack_trace", "stack"):
            if exc.get(key):
                value = exc[key]
                return "".join(value) if isinstance(value, list) else str(value)
        kind, value = exc.get("type"), exc.get("value") or exc.get("message")
        return f"{kind}: {value}" if kind else json_dumps(dict(exc))
    return str(exc)


class RowBuilder:
    """Turns records into row tuples as cheaply as Python allows (the writer's hot loop).

    - atb.logging hands every record of one context the same (cached) context dict, so its
      JSON is computed once per change instead of once per event;
    - event_type is memoised per (event_type, name, severity);
    - strings are only length-checked here; NUL bytes, which PostgreSQL rejects, are
      handled by `sanitize_row` on the rare batch the database refuses.
    """

    def __init__(self, session_id: str | None, ts_text: bool = False) -> None:
        self.session_id = session_id
        # SQLite: timestamps as SQLAlchemy's DateTime text (naive UTC, microseconds),
        # built here so the insert needs no second pass over the rows.
        self.ts_text = ts_text
        self._ctx: Any = None
        self._ctx_json: str | None = None
        self._ctx_cols: tuple[Any, Any, Any, Any] = (None, None, None, None)
        self._types: dict[tuple[Any, Any, Any], str] = {}
        # The second [_ts_lo, _ts_hi) whose text is _ts_prefix.
        self._ts_lo = self._ts_hi = datetime.min.replace(tzinfo=UTC)
        self._ts_prefix = ""

    def __call__(self, record: Mapping[str, Any]) -> Row:
        get = record.get
        context = get("context") or _EMPTY
        if context is not self._ctx:
            self._ctx = context
            if not isinstance(context, Mapping):
                context = {"value": context}
            self._ctx_json = _encode(context) if context else None
            cget = context.get
            # Cut to their column widths once per context, not once per event.
            self._ctx_cols = (
                _text(cget("component"), "component"),
                _text(cget("strategy"), "strategy"),
                _text(cget("symbol"), "symbol"),
                # atb.logging's context calls the run `run_id`; the seed calls it session_id.
                _text(cget("session_id") or cget("run_id") or self.session_id, "session_id"),
            )
        component, strategy, symbol, session = self._ctx_cols
        details = get("details")
        if details is None:
            details = get("fields")
        if details:
            if type(details) is not dict and not isinstance(details, Mapping):
                details = {"value": details}
            fget = details.get
            # (_text(None) is None: only call it for a value.)
            if component is None and fget("component") is not None:
                component = _text(fget("component"), "component")
            if strategy is None and fget("strategy") is not None:
                strategy = _text(fget("strategy"), "strategy")
            if symbol is None and fget("symbol") is not None:
                symbol = _text(fget("symbol"), "symbol")
            error_code = get("error_code") or fget("error_code")
            try:  # _encode, inlined: one call per event
                details_json: str | None = _dumps(
                    details, default=str, option=_ORJSON_OPTS
                ).decode()
            except (TypeError, orjson.JSONEncodeError):
                details_json = _json_encode(details)
        else:
            error_code = get("error_code")
            details_json = None
        severity = get("severity") or get("level") or "INFO"
        key = (get("event_type"), get("name"), severity)
        event_type = self._types.get(key)
        if event_type is None:
            if severity not in _SEVERITIES:
                severity = str(severity).upper()
                if severity not in _SEVERITIES:
                    severity = "WARNING" if severity == "WARN" else "INFO"
            event_type = event_type_of(record, severity)
            if len(self._types) < 10_000:
                self._types[key] = event_type
        elif severity not in _SEVERITIES:
            severity = str(severity).upper()
            if severity not in _SEVERITIES:
                severity = "WARNING" if severity == "WARN" else "INFO"
        ts = get("timestamp")
        if type(ts) is not datetime or ts.tzinfo is None:
            ts = _timestamp(ts)
        if self.ts_text:
            # Formatting a datetime costs more than the rest of the row: reuse the text of
            # the second, which a burst of events shares, and add the microseconds. Two
            # datetime comparisons (field-wise in C for the same tzinfo) find that second.
            if ts.tzinfo is not UTC and ts.utcoffset():
                ts = ts.astimezone(UTC)
            if not self._ts_lo <= ts < self._ts_hi:
                lo = ts.replace(microsecond=0)
                self._ts_lo, self._ts_hi = lo, lo + _SECOND
                self._ts_prefix = lo.isoformat(" ", "seconds")[:19] + "."
            micro = ts.microsecond
            ts = self._ts_prefix + _MICROS[micro // 1000] + _MICROS[micro % 1000]
        message = get("message") or ""
        name = get("name")
        logger_name = get("logger")
        exc = get("exception")
        stack = get("stack_trace") or (_stack_trace(record) if exc else None)
        alert_method = get("alert_method")
        if get("component"):
            component = _text(get("component"), "component")
        if get("session_id"):
            session = _text(get("session_id"), "session_id")
        uid = get("id") or get("event_uuid") or event_id()
        return (
            uid if type(uid) is str else str(uid),
            ts,
            event_type,
            severity,
            message if type(message) is str else str(message),
            name
            if name is None or (type(name) is str and len(name) <= 64)
            else _text(name, "name"),
            logger_name
            if logger_name is None or (type(logger_name) is str and len(logger_name) <= 128)
            else _text(logger_name, "logger"),
            details_json,
            self._ctx_json,
            component,
            strategy,
            symbol,
            _text(error_code, "error_code") if error_code is not None else None,
            None if stack is None else str(stack),
            bool(get("alert_sent", False)),
            _text(alert_method, "alert_method") if alert_method is not None else None,
            session,
        )


def sanitize_row(row: Row) -> Row:
    """The row with NUL bytes escaped and strings cut to their column widths."""
    out = list(row)
    for i, column in enumerate(COLUMNS):
        value = out[i]
        if isinstance(value, str):
            if column in ("details", "context"):
                out[i] = value.replace("\\u0000", "\\\\0")
            else:
                out[i] = _text(value, column)
    return tuple(out)


# Columns atb fills itself (a generated id, the time, enums, a flag): nothing to redact.
_NO_TEXT = frozenset({"event_uuid", "timestamp", "event_type", "severity", "alert_sent"})
_TEXT_AT = tuple(i for i, c in enumerate(COLUMNS) if c not in _NO_TEXT)
_JSON_AT = frozenset(COLUMNS.index(c) for c in ("details", "context"))


def redact_row(row: Row, red: Redactor) -> Row:
    """The row as it may be written to a file: every text column through the run's redactor.

    Records from atb.logging were redacted when they were made, but `Journal.emit` callers
    (alerts, CLIs) hand over their own dicts, and a file is a boundary of its own: this is
    the second pass. Clean strings cost the redactor's cache lookup. JSON columns that
    need it are redacted as structure, so a value under a sensitive key goes whatever its
    type and the text stays JSON the database accepts.
    """
    out: list[Any] | None = None
    for i in _TEXT_AT:
        value = row[i]
        if type(value) is not str:
            continue
        clean = red.redact_text(value)
        if clean is value:
            continue
        if i in _JSON_AT:
            try:
                structured = _encode(red.redact(json.loads(value)))
            except ValueError:
                structured = None  # not JSON after all: the text redaction stands
            # (Structure leaves keys alone: a secret used as a key keeps the text form.)
            if structured is not None and red.redact_text(structured) == structured:
                clean = structured
        if out is None:
            out = list(row)
        out[i] = clean
    return row if out is None else tuple(out)


_EMPTY: Mapping[str, Any] = {}
_SECOND = timedelta(seconds=1)
_MICROS = [f"{i:03d}" for i in range(1000)]  # a timestamp's microseconds, 3 digits at a time


def record_to_row(record: Mapping[str, Any], session_id: str | None = None) -> Row:
    """One `system_events` row tuple (COLUMNS order) from a log record or emit() event."""
    return RowBuilder(session_id)(record)


def row_as_dict(row: Row) -> dict[str, Any]:
    return dict(zip(COLUMNS, row, strict=True))


def row_to_json(row: Row) -> str:
    """A spill-file line: the row as a JSON array, timestamp in ISO 8601 UTC."""
    out = list(row)
    ts = row[_TS]
    out[_TS] = ts.isoformat() if isinstance(ts, datetime) else ts.replace(" ", "T") + "+00:00"
    return _encode(out)


def row_from_json(line: str, ts_text: bool = False) -> Row:
    values = json.loads(line)
    if not isinstance(values, list) or len(values) != len(COLUMNS):
        raise ValueError("not a journal row")
    ts = _timestamp(values[_TS])
    values[_TS] = sqlite_timestamp(ts) if ts_text else ts
    return tuple(values)


def format_exception(exc: BaseException) -> str:
    """A stack trace string for `emit(stack_trace=...)` callers."""
    return "".join(traceback.format_exception(exc))
