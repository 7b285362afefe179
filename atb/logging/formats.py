"""The two record formats every sink writes: JSON lines (the documented schema) and text."""

from __future__ import annotations

from typing import Any

import orjson

_JSON_OPTS = orjson.OPT_APPEND_NEWLINE | orjson.OPT_UTC_Z | orjson.OPT_NON_STR_KEYS
# Top-level JSON keys a field or context key may not overwrite.
RESERVED = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "message",
        "event_type",
        "event",
        "exception",
        "function",
        "line",
    }
)


def json_object(record: dict[str, Any]) -> dict[str, Any]:
    """The documented JSON schema (README.md, "JSON schema")."""
    out: dict[str, Any] = {
        "timestamp": record["timestamp"],
        "level": record["level"],
        "logger": record["logger"],
        "message": record["message"],
        "event_type": record["event_type"],
    }
    if record["event"] is not None:
        out["event"] = record["event"]
    ctx = record["context"]
    if ctx:
        out.update(ctx)
    fields = record["fields"]
    if fields:
        if fields.keys() & RESERVED:
            for key, value in fields.items():
                out[f"field_{key}" if key in RESERVED else key] = value
        else:
            out.update(fields)
    if record["exception"] is not None:
        out["exception"] = record["exception"]
    if record["function"] is not None:
        out["function"] = record["function"]
        out["line"] = record["line"]
    return out


def json_line(record: dict[str, Any]) -> bytes:
    return orjson.dumps(json_object(record), option=_JSON_OPTS, default=str)


_COLORS = {
    "TRACE": "\x1b[2m",
    "DEBUG": "\x1b[36m",
    "INFO": "\x1b[1m",
    "SUCCESS": "\x1b[32m",
    "WARNING": "\x1b[33m",
    "ERROR": "\x1b[31m",
    "CRITICAL": "\x1b[1;41m",
}
_RESET = "\x1b[0m"
_DIM = "\x1b[2m"


def _value(value: Any) -> str:
    if isinstance(value, str):
        return (
            value
            if value and " " not in value and "=" not in value
            else orjson.dumps(value).decode()
        )
    if isinstance(value, dict | list):
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    return str(value)


def text_line(
    record: dict[str, Any],
    *,
    colorize: bool = False,
    show_context: bool = True,
    show_fields: bool = True,
) -> str:
    """`2025-01-01 12:00:00.123Z | INFO     | module:function:line | message | fields | ctx`"""
    ts = record["timestamp"]
    stamp = ts.strftime("%Y-%m-%d %H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    level = record["level"]
    where = record["logger"]
    if record["function"] is not None:
        where = f"{where}:{record['function']}:{record['line']}"
    parts = [stamp, f"{level:<8}", where, record["message"]]
    if show_fields:
        shown = []
        if record["event_type"] is not None:
            shown.append(f"event_type={record['event_type']}")
        shown += [f"{k}={_value(v)}" for k, v in record["fields"].items()]
        if shown:
            parts.append(" ".join(shown))
    if show_context and record["context"]:
        parts.append(
            " ".join(
                f"{k}={_value(v)[:8] if k == 'run_id' else _value(v)}"
                for k, v in record["context"].items()
            )
        )
    line = " | ".join(parts)
    if colorize:
        color = _COLORS.get(level, "")
        line = f"{_DIM}{stamp}{_RESET} | {color}{level:<8}{_RESET} | " + " | ".join(parts[2:])
    exc = record["exception"]
    if exc is not None:
        line += "\n" + exc["traceback"].rstrip("\n")
    return line + "\n"


# -- built-in sinks --------------------------------------------------------------------------
