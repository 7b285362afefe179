"""Settings of the `logging` node: the sinks and the noise controls shared by all of them.

Each entry of `sinks` is a `_target_` naming a sink class plus that sink's own settings,
validated by the `config_model` the class declares (as for run-graph nodes), so a user
adds a sink of their own in YAML. `kind: console|json|file` is a shorthand for the
built-in targets.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from atb.config.base import NodeConfig, StrictModel
from atb.config.targets import TargetList

Level = Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR", "CRITICAL"]

LEVEL_NUMBERS: dict[str, int] = {
    "TRACE": 5,
    "DEBUG": 10,
    "INFO": 20,
    "SUCCESS": 25,
    "WARNING": 30,
    "ERROR": 40,
    "CRITICAL": 50,
}

SINK_KINDS: dict[str, str] = {
    "console": "atb.logging.sinks.ConsoleSink",
    "json": "atb.logging.sinks.JsonSink",
    "file": "atb.logging.sinks.FileSink",
}

DEFAULT_LIBRARY_LEVELS: dict[str, str] = {
    "sqlalchemy": "WARNING",
    "urllib3": "WARNING",
    "binance": "WARNING",
    "ccxt": "WARNING",
    "asyncio": "WARNING",
    "tornado.access": "WARNING",
    "alembic": "WARNING",  # migration chatter on every start
}


def _upper_level(value: Any) -> Any:
    if isinstance(value, str):
        upper = value.strip().upper()
        return "WARNING" if upper == "WARN" else upper
    return value


class SinkConfig(StrictModel):
    """Settings every sink has. `level: null` follows `logging.level` (and so LOG_LEVEL)."""

    entry_kind: ClassVar[str] = "a log sink"
    shorthands: ClassVar[dict[str, str]] = SINK_KINDS

    target: str = Field(alias="_target_", min_length=1)
    name: str | None = Field(None, description="label used in failure reports and health")
    level: Level | None = None
    enabled: bool = True

    @field_validator("level", mode="before")
    @classmethod
    def _level_case(cls, value: Any) -> Any:
        return _upper_level(value)


class ConsoleSinkConfig(SinkConfig):
    """Human-readable text, with the context and event fields after the message."""

    target: str = Field("atb.logging.sinks.ConsoleSink", alias="_target_", min_length=1)
    stream: Literal["stderr", "stdout"] = "stderr"
    colorize: bool | None = Field(None, description="null: colour only when the stream is a tty")
    show_context: bool = True
    show_fields: bool = True


class JsonSinkConfig(SinkConfig):
    """One JSON object per line (schema in README.md, "JSON schema")."""

    target: str = Field("atb.logging.sinks.JsonSink", alias="_target_", min_length=1)
    stream: Literal["stdout", "stderr"] = "stdout"


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmg]?i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(value: int | str) -> int:
    """`10 MB`, `500kb`, `1048576` → bytes."""
    if isinstance(value, int):
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"not a size like '10 MB' (got {value!r})")
    unit = match.group(2).lower()[:1]
    return int(float(match.group(1)) * _UNITS[unit])


class FileSinkConfig(SinkConfig):
    """A size-rotated file; `retention` old files are kept next to it (`atb.log.1` …)."""

    target: str = Field("atb.logging.sinks.FileSink", alias="_target_", min_length=1)
    path: str = Field(
        "logs/atb.log", min_length=1, description="may use {run_id}, {mode}, {output_dir}"
    )
    format: Literal["json", "text"] = "json"
    rotation: int | str = Field("20 MB", description="rotate when the file reaches this size")
    retention: int = Field(5, ge=0, description="rotated files to keep")

    @field_validator("rotation")
    @classmethod
    def _size(cls, value: int | str) -> int | str:
        if parse_size(value) < 1024:
            raise ValueError("must be at least 1 KB")
        return value

    @property
    def rotation_bytes(self) -> int:
        return parse_size(self.rotation)


def _default_sinks() -> list[SinkConfig]:
    return [ConsoleSinkConfig()]


class RateLimitConfig(StrictModel):
    """Identical plain records beyond `burst` per `window_seconds` become one summary line.

    Events are never rate-limited: they are structured and carry distinct fields.
    """

    enabled: bool = True
    window_seconds: float = Field(10.0, gt=0)
    burst: int = Field(10, ge=1)


class LoggingConfig(NodeConfig):
    target: str = Field("atb.logging.node.LoggingNode", alias="_target_", min_length=1)
    needs: list[str] = Field(default_factory=lambda: ["redaction"])
    level: Level = Field("INFO", description="level of every sink without its own (LOG_LEVEL)")
    json_output: bool | None = Field(
        None,
        description="true: console sinks write JSON to stdout; false: JSON stream sinks write "
        "text; null: JSON when ENV=production or a RAILWAY_* variable is set (LOG_JSON)",
    )
    sinks: TargetList[SinkConfig] = Field(default_factory=lambda: _default_sinks())
    library_levels: dict[str, Level] = Field(
        default_factory=lambda: dict(DEFAULT_LIBRARY_LEVELS),  # type: ignore[arg-type]
        description="stdlib logger levels; LOG_<LIB>_LEVEL overrides the four seed ones",
    )
    intercept_stdlib: bool = Field(True, description="route stdlib logging into these sinks")
    max_message_len: int = Field(8192, ge=64, description="LOG_MAX_MESSAGE_LEN overrides")
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    background: bool = Field(
        True, description="write on per-sink threads so the trading loop never waits on I/O"
    )
    queue_size: int = Field(50_000, ge=100, description="records buffered per sink")
    flush_interval: float = Field(0.1, gt=0, le=5, description="seconds between sink flushes")

    @field_validator("level", mode="before")
    @classmethod
    def _level_case(cls, value: Any) -> Any:
        return _upper_level(value)

    @field_validator("library_levels", mode="before")
    @classmethod
    def _library_case(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: _upper_level(v) for k, v in value.items()}
        return value
