"""Base classes shared by every domain's config model.

Every model forbids unknown keys: a typo in a YAML file or on the command line is an
error that names the key, never a silently ignored setting.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from atb.logging.redaction import is_secret_key, redact_text


class StrictModel(BaseModel):
    # inf/nan are never a meaningful setting (`live.check_interval=inf` would only fail at
    # run time): every float of every config model must be finite.
    model_config = ConfigDict(
        extra="forbid", validate_default=True, populate_by_name=True, allow_inf_nan=False
    )


class NodeConfig(StrictModel):
    """Settings common to every run-graph node.

    `_target_` names the class that builds the node; `needs` names the nodes it is
    handed at construction; `enabled: false` removes it from the graph (`health=off`).
    """

    target: str = Field(alias="_target_", min_length=1)
    needs: list[str] = Field(default_factory=list)
    enabled: bool = True


def _assume_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# A config time: naive values mean UTC, like the candle files' timestamps.
UtcDatetime = Annotated[datetime, AfterValidator(_assume_utc)]


class FieldProblem(ValueError):
    """A cross-field check failure attributed to one field of the model."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(message)


def field_error(field: str, message: str) -> FieldProblem:
    """Raise from a model validator to report `message` against `field`'s dotted key."""
    return FieldProblem(field, message)


def format_validation_error(exc: ValidationError, prefix: str = "") -> list[str]:
    """One line per problem: `dotted.key: what is wrong (got <value>)`."""
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        msg = err["msg"]
        ctx_error: Any = (err.get("ctx") or {}).get("error")
        if isinstance(ctx_error, FieldProblem):
            loc.append(ctx_error.field)
            msg = ctx_error.message
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        key = ".".join(p for p in [prefix, *loc] if p) or "<root>"
        value = err.get("input")
        hidden = err["type"] in {"extra_forbidden", "missing"} or isinstance(value, dict | list)
        if hidden or is_secret_key(loc[-1] if loc else key) or is_secret_key(key):
            shown = ""
        else:
            shown = f" (got {_clip(value)})"
        # the key is not redacted: `exchange.api_key: <message>` is a key name, no value
        lines.append(f"{key}: {redact_text(msg + shown)}")
    return lines


def _clip(value: Any, limit: int = 200) -> str:
    """An echoed value stays one readable line: a 5 MB cell is not printed whole."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(str(value))} characters)"
