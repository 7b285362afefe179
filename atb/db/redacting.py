"""Every text value written to the database goes through the run's redactor.

One engine hook covers every text column (orders.note, decision reasons, run errors,
event messages) whichever code path writes it, so an exchange error that echoes a key, a
Bearer header or a URL password is stored masked. JSON columns are redacted as structure
by the engine's serializer (`json_dumps`), which keeps them valid JSON.

Per-bar tables are written by the thousand rows, so the hook works out once per compiled
statement which parameters cannot hold text (numbers, times, JSON), skips those, and
copies a row only when a value in it changed.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import types as sqltypes

from atb.logging.redaction import get_redactor

# Bound types whose values are never free text (SQLite receives times as strings).
_NOT_TEXT = (
    sqltypes.DateTime,
    sqltypes.Date,
    sqltypes.Time,
    sqltypes.Interval,
    sqltypes.Numeric,
    sqltypes.Float,
    sqltypes.Integer,
    sqltypes.Boolean,
    sqltypes.JSON,
    sqltypes.LargeBinary,
)
_ATTR = "_atb_text_params"


class RedactedJson(str):
    """JSON text already redacted as structure; passed through as is."""

    __slots__ = ()


def _json_default(value: Any) -> Any:
    # Event fields can carry datetimes, Decimals, enums: store their text, never fail a batch.
    return str(value)


def json_dumps(value: Any) -> str:
    """The engine's JSON serializer: a value under a sensitive key goes whatever its type."""
    text = json.dumps(get_redactor().redact(value), default=_json_default, separators=(",", ":"))
    return RedactedJson(text)


class _Skip:
    """Parameters known to hold no free text: names, and positions of a positional style."""

    __slots__ = ("names", "text_positions", "width")

    def __init__(self, names: frozenset[str], text_positions: tuple[int, ...], width: int) -> None:
        self.names = names
        self.text_positions = text_positions  # the others, for rows `width` wide
        self.width = width


_NOTHING = _Skip(frozenset(), (), -1)


def _skip_for(context: Any) -> _Skip:
    """Worked out once per compiled statement. Anything not known to be a number, time or
    JSON is redacted: a textual statement, a parameter name the compiler did not declare
    (batched `note__0`), a positional row of unexpected width (batched VALUES)."""
    compiled = getattr(context, "compiled", None)
    if compiled is None:
        return _NOTHING
    cached = compiled.__dict__.get(_ATTR)
    if cached is not None:
        return cached
    binds = getattr(compiled, "binds", None) or {}

    def not_text(name: str) -> bool:
        bind = binds.get(name)
        return bind is not None and isinstance(bind.type, _NOT_TEXT)

    order = list(getattr(compiled, "positiontup", None) or ())
    skip = _Skip(
        frozenset(n for n in binds if not_text(n)),
        tuple(i for i, n in enumerate(order) if not not_text(n)),
        len(order),
    )
    compiled.__dict__[_ATTR] = skip
    return skip


def _redact_row(params: Any, skip: _Skip, redact: Any) -> Any:
    if isinstance(params, dict):
        changed: dict[Any, Any] | None = None
        names = skip.names
        for k, v in params.items():
            if v.__class__ is str and k not in names:
                new = redact(v)
                if new is not v:
                    changed = changed if changed is not None else dict(params)
                    changed[k] = new
        return params if changed is None else changed
    if isinstance(params, tuple | list):
        indexes = skip.text_positions if len(params) == skip.width else range(len(params))
        out: list[Any] | None = None
        for i in indexes:
            v = params[i]
            if v.__class__ is str:
                new = redact(v)
                if new is not v:
                    out = out if out is not None else list(params)
                    out[i] = new
        if out is None:
            return params
        return tuple(out) if isinstance(params, tuple) else out
    return params


def install(engine: Engine) -> None:
    @event.listens_for(engine, "before_cursor_execute", retval=True)
    def _redact(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, executemany: bool
    ) -> tuple[str, Any]:
        redact = get_redactor().redact_text
        skip = _skip_for(context)
        if executemany and isinstance(params, list | tuple):
            rows = [_redact_row(p, skip, redact) for p in params]
            same = all(a is b for a, b in zip(rows, params, strict=True))
            return statement, params if same else rows
        return statement, _redact_row(params, skip, redact)
