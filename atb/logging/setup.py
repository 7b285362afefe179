"""`configure_logging`: build the sinks from the `logging` config, then apply env overrides.

Sources wired here, all feeding `atb.logging.core.emit`:

* loguru (`from loguru import logger`): one loguru handler forwards every record; loguru's
  own formatting, `serialize` and `enqueue` are not used (too slow for the hot path) and
  `diagnose` is off (it prints local variables, i.e. secrets);
* stdlib `logging` (sqlalchemy, urllib3, ccxt, tornado, bokeh, asyncio, …): a root
  handler forwards records with their own logger name, function and line;
* `atb.logging.events` emitters call `core.emit` directly.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from atb.config.logging import (
    LEVEL_NUMBERS,
    ConsoleSinkConfig,
    FileSinkConfig,
    JsonSinkConfig,
    LoggingConfig,
    SinkConfig,
)
from atb.logging import core, thirdparty
from atb.logging.redaction import Redactor, get_redactor
from atb.logging.sink import Sink, SinkSettings
from atb.runtime.errors import ConfigError

ENV_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LIBRARY_ENV = {
    "LOG_SQLALCHEMY_LEVEL": "sqlalchemy",
    "LOG_URLLIB3_LEVEL": "urllib3",
    "LOG_BINANCE_LEVEL": "binance",
    "LOG_CCXT_LEVEL": "ccxt",
}
# Libraries that install console handlers of their own; theirs are removed so each record
# is written once, by atb's sinks.
_OWN_HANDLER_LIBS = ("bokeh", "tornado", "panel", "sqlalchemy", "urllib3", "ccxt", "binance")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass
class EnvOverrides:
    level: str | None = None
    json: bool | None = None
    library_levels: dict[str, str] = field(default_factory=dict)
    max_message_len: int | None = None


def platform_json(environ: Mapping[str, str] | None = None) -> bool:
    """ENV=production or any RAILWAY_* variable: JSON logs unless said otherwise."""
    env = os.environ if environ is None else environ
    return env.get("ENV", "").strip().lower() == "production" or any(
        key.startswith("RAILWAY_") for key in env
    )


def resolve_json(*choices: bool | None, environ: Mapping[str, str] | None = None) -> bool | None:
    """The first explicit choice (LOG_JSON, then `logging.json`), else the platform's."""
    for choice in choices:
        if choice is not None:
            return choice
    return True if platform_json(environ) else None


def read_env(environ: Mapping[str, str] | None = None) -> EnvOverrides:
    """Parse the LOG_* variables; ConfigError names every bad one.

    For logging configured in code (CLI commands, dashboards, tests). A run's `logging`
    node does not use these: its config resolves the same variables with `${oc.env:...}`
    (conf/logging/_base.yaml), so `--cfg job` shows them and an override beats them.
    """
    env = os.environ if environ is None else environ
    problems: list[str] = []
    out = EnvOverrides()

    def level_of(name: str) -> str | None:
        raw = env.get(name, "").strip()
        if not raw:
            return None
        value = raw.upper()
        if value == "WARN":
            value = "WARNING"
        if value not in ENV_LEVELS:
            problems.append(f"{name}: must be one of {', '.join(ENV_LEVELS)} (got {raw!r})")
            return None
        return value

    out.level = level_of("LOG_LEVEL")
    raw_json = env.get("LOG_JSON", "").strip().lower()
    if raw_json in _TRUE:
        out.json = True
    elif raw_json in _FALSE:
        out.json = False
    elif raw_json:
        problems.append(f"LOG_JSON: must be 1 or 0 (got {env.get('LOG_JSON')!r})")
    for var, lib in LIBRARY_ENV.items():
        lib_level = level_of(var)
        if lib_level is not None:
            out.library_levels[lib] = lib_level
    raw_len = env.get("LOG_MAX_MESSAGE_LEN", "").strip()
    if raw_len:
        try:
            out.max_message_len = int(raw_len)
            if out.max_message_len < 64:
                raise ValueError
        except ValueError:
            problems.append(f"LOG_MAX_MESSAGE_LEN: must be an integer >= 64 (got {raw_len!r})")
    if problems:
        raise ConfigError(problems)
    return out


def effective_sinks(config: LoggingConfig, json: bool | None) -> list[SinkConfig]:
    """The enabled sinks after LOG_JSON: 1 turns console sinks into JSON on stdout, 0 turns
    stream JSON sinks into console text. File sinks keep their format."""
    result: list[SinkConfig] = []
    for sink in config.sinks:
        if not sink.enabled:
            continue
        if json is True and type(sink) is ConsoleSinkConfig:
            sink = JsonSinkConfig.model_validate({"name": sink.name, "level": sink.level})
        elif json is False and type(sink) is JsonSinkConfig:
            sink = ConsoleSinkConfig.model_validate({"name": sink.name, "level": sink.level})
        result.append(sink)
    if json is True:
        # two console sinks (stderr + stdout) must not become two copies of each line
        seen: set[str] = set()
        deduped: list[SinkConfig] = []
        for sink in result:
            if type(sink) is JsonSinkConfig:
                if sink.stream in seen:
                    continue
                seen.add(sink.stream)
            deduped.append(sink)
        result = deduped
    return result


def json_on_stdout(config: LoggingConfig | None = None) -> bool:
    """True when stdout carries JSON log records (LOG_JSON=1, ENV=production, logging=json):
    then stdout must stay a stream of JSON objects an aggregator can ingest."""
    state = _state
    if config is None and state is not None:
        config, json = state.config, state.json
    else:
        try:
            json = resolve_json(read_env().json, config.json_output if config is not None else None)
        except Exception:  # a bad LOG_* value is reported where logging is configured
            json = None
    if config is None:
        return json is True
    return any(
        type(sink) is JsonSinkConfig and sink.stream == "stdout"
        for sink in effective_sinks(config, json)
    )


def report_stream(config: LoggingConfig | None = None) -> TextIO:
    """Where human-readable reports (the backtest summary, the sweep ranking) go: stdout,
    unless stdout carries JSON records, then stderr."""
    return sys.stderr if json_on_stdout(config) else sys.stdout


@dataclass
class LoggingState:
    config: LoggingConfig
    level: str
    sinks: tuple[Sink, ...]
    library_levels: dict[str, str]
    json: bool | None


_lock = threading.RLock()
_last_config: LoggingConfig | None = None
_state: LoggingState | None = None
_loguru_id: int | None = None
_atexit_registered = False
_ticker: threading.Thread | None = None


def configure_logging(
    config: LoggingConfig | Mapping[str, Any] | None = None,
    *,
    redactor: Redactor | None = None,
    env: Mapping[str, str] | None = None,
    env_overrides: bool = True,
    run_id: str = "",
    mode: str = "",
    output_dir: str = ".",
) -> LoggingState:
    """Install the sinks; safe to call again (the previous sinks are flushed and replaced).

    Without `config`, the config of the last call is reused (console defaults the first
    time), so a dashboard or CLI command calling this inside a configured run keeps the
    run's sinks. The LOG_* variables are applied on top (ConfigError for an invalid one)
    unless `env_overrides` is false: the `logging` node's config already resolved them.
    """
    global _last_config, _state
    overrides = read_env(env) if env_overrides else EnvOverrides()
    with _lock:
        if config is None:
            cfg = _last_config or LoggingConfig()
        elif isinstance(config, LoggingConfig):
            cfg = config
        else:
            cfg = LoggingConfig.model_validate(dict(config))
        level = overrides.level or cfg.level
        library_levels = {**cfg.library_levels, **overrides.library_levels}
        settings = SinkSettings(
            background=cfg.background,
            queue_size=cfg.queue_size,
            flush_interval=cfg.flush_interval,
            run_id=run_id,
            mode=mode,
            output_dir=output_dir,
        )
        json = resolve_json(overrides.json, cfg.json_output, environ=env)
        sinks = tuple(_build_sink(s, level, settings) for s in effective_sinks(cfg, json))
        red = redactor or get_redactor()
        old = core.install(
            sinks,
            redactor=red,
            max_len=overrides.max_message_len or cfg.max_message_len,
            rate_limit=(
                cfg.rate_limit.enabled,
                cfg.rate_limit.window_seconds,
                cfg.rate_limit.burst,
            ),
        )
        for sink in old:
            # a broken old sink must not block the new configuration
            with contextlib.suppress(Exception):
                sink.close()
        floor = min(core.min_level(), core.WARNING)
        _install_loguru(floor)
        if cfg.intercept_stdlib:
            _install_stdlib(floor, library_levels)
        _last_config = cfg
        _state = LoggingState(cfg, level, sinks, library_levels, json)
        _ensure_background()
        return _state


def _build_sink(config: SinkConfig, level: str, settings: SinkSettings) -> Sink:
    from atb.config.targets import import_target

    cls = import_target(config.target)
    levelno = LEVEL_NUMBERS[config.level or level]
    try:
        sink: Sink = cls(config, levelno=levelno, settings=settings)
    except OSError as exc:
        where = f" ({config.path})" if isinstance(config, FileSinkConfig) else ""
        raise ConfigError(
            f"logging.sinks: cannot open sink '{config.name or cls.__name__}'{where}: {exc}"
        ) from exc
    return sink


def current_state() -> LoggingState | None:
    return _state


def sink_health() -> list[dict[str, Any]]:
    """Per-sink status for the health server: ok / error / dropped / queued / lost."""
    return [s.health() for s in core.sinks()]


def flush() -> None:
    """Write out everything queued (call before reading a log file, or before exit)."""
    core.flush_all()


def shutdown() -> None:
    """Flush every sink and stop the writer threads; later records are written inline."""
    core.flush_rate_limits(force=True)
    for sink in core.sinks():
        with contextlib.suppress(Exception):  # keep going: the other sinks must still flush
            sink.stop_background()


# -- loguru ---------------------------------------------------------------------------------


def _from_loguru(message: Any) -> None:
    r = message.record
    extra = r["extra"]
    event_type = event = None
    fields = None
    if extra:
        fields = dict(extra)
        event_type = fields.pop("event_type", None)
        event = fields.pop("event", None)
    exc = r["exception"]
    core.emit(
        r["level"].no,
        r["level"].name,
        r["name"] or "",
        r["function"],
        r["line"],
        r["message"],
        event_type,
        event,
        fields,
        (exc.type, exc.value, exc.traceback) if exc is not None and exc.type else None,
        # loguru's own datetime subclass is not serialisable by orjson; "now" is
        # microseconds later and costs less than converting
        datetime.now(UTC),
    )


def _install_loguru(floor: int) -> None:
    global _loguru_id
    from loguru import logger

    if _loguru_id is not None:
        with contextlib.suppress(ValueError):  # someone called logger.remove() meanwhile
            logger.remove(_loguru_id)
    with contextlib.suppress(ValueError):
        logger.remove(0)  # loguru's default stderr handler: unredacted, so it goes
    _loguru_id = logger.add(
        _from_loguru,
        level=floor,
        format="{message}",
        colorize=False,
        backtrace=False,
        diagnose=False,
        catch=True,
    )


# -- stdlib logging ---------------------------------------------------------------------------

_STD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()) | {
    "message",
    "asctime",
    "taskName",
}


class InterceptHandler(logging.Handler):
    """Root handler forwarding stdlib records, attributed to their own logger and caller."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        extras = {k: v for k, v in record.__dict__.items() if k not in _STD_ATTRS}
        event_type = extras.pop("event_type", None)
        event = extras.pop("event", None)
        exc = record.exc_info
        core.emit(
            record.levelno,
            core.LEVEL_NAMES.get(record.levelno) or record.levelname,
            record.name,
            record.funcName,
            record.lineno,
            message,
            event_type,
            event,
            extras or None,
            exc if exc and exc[0] is not None else None,
            datetime.fromtimestamp(record.created, UTC),
        )


def _install_stdlib(floor: int, library_levels: Mapping[str, str]) -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        # exact type: pytest's caplog handler subclasses StreamHandler and must stay
        if isinstance(handler, InterceptHandler) or type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
    intercept = InterceptHandler()
    root.addHandler(intercept)
    root.setLevel(floor)
    for name in _OWN_HANDLER_LIBS:
        existing = logging.Logger.manager.loggerDict.get(name)
        if isinstance(existing, logging.Logger):
            for handler in list(existing.handlers):
                if type(handler) is logging.StreamHandler:
                    existing.removeHandler(handler)
            existing.propagate = True
    thirdparty.install(intercept)
    for name, level in library_levels.items():
        logging.getLogger(name).setLevel(LEVEL_NUMBERS[level])
    logging.captureWarnings(True)


# -- process lifetime -----------------------------------------------------------------------


def _ensure_background() -> None:
    global _atexit_registered, _ticker
    if not _atexit_registered:
        atexit.register(shutdown)
        _atexit_registered = True
    if _ticker is None or not _ticker.is_alive():
        # closes rate-limit windows so a storm that stopped still gets its summary line
        _ticker = threading.Thread(target=_tick, name="atb-log-ticker", daemon=True)
        _ticker.start()


def _tick() -> None:
    import time

    while True:
        time.sleep(1.0)
        with contextlib.suppress(Exception):  # never let the ticker die on a bad record
            core.flush_rate_limits()


def reset_logging() -> None:
    """Undo configure_logging (for tests): sinks flushed and removed, handlers uninstalled."""
    global _loguru_id, _last_config, _state
    with _lock:
        for sink in core.install((), redactor=None, max_len=8192, rate_limit=(True, 10.0, 10)):
            with contextlib.suppress(Exception):  # closing a broken sink must not fail the reset
                sink.close()
        if _loguru_id is not None:
            from loguru import logger

            with contextlib.suppress(ValueError):
                logger.remove(_loguru_id)
            _loguru_id = None
        root = logging.getLogger()
        for handler in list(root.handlers):
            if isinstance(handler, InterceptHandler):
                root.removeHandler(handler)
        logging.captureWarnings(False)
        thirdparty.uninstall()
        _last_config = None
        _state = None
