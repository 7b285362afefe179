"""Log sinks: console text, JSON lines, rotating files — and the contract for your own.

A sink receives already-redacted record dicts through `put()`. The built-in sinks queue
them in a bounded deque and format + write them in batches on a thread of their own,
so a slow disk or a blocked pipe never stalls the trading loop, and a batch costs one
write() call instead of one per record. When a write fails the sink reports it once,
drops what it cannot write, retries after `RETRY_AFTER` seconds, and the other sinks
carry on.

Custom sink: subclass `Sink` (or `QueuedSink` and implement `write_batch`), declare
`config_model` (a `SinkConfig` subclass) and name the class in `logging.sinks[]._target_`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TextIO
from weakref import WeakSet

import orjson

from atb.config.logging import (
    ConsoleSinkConfig,
    FileSinkConfig,
    JsonSinkConfig,
    SinkConfig,
)
from atb.logging import core

RETRY_AFTER = 5.0
REANNOUNCE_EVERY = 600.0  # a still-failing sink repeats its log_sink_failed event this often
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


@dataclass(frozen=True)
class SinkSettings:
    """The logging node's settings every sink shares."""

    background: bool = True
    queue_size: int = 50_000
    flush_interval: float = 0.1
    run_id: str = ""
    mode: str = ""
    output_dir: str = "."


class Sink(ABC):
    """The sink contract: `put` must be cheap and must not raise."""

    config_model: ClassVar[type[SinkConfig]] = SinkConfig

    def __init__(self, config: SinkConfig, *, levelno: int, settings: SinkSettings) -> None:
        self.config = config
        self.levelno = levelno
        self.settings = settings
        self.name = config.name or type(self).__name__
        self.failed = False
        self.error: str | None = None
        self.dropped = 0

    @abstractmethod
    def put(self, record: dict[str, Any], critical: bool) -> None:
        """Each subclass implements this."""

    def flush(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Write out everything accepted so far."""

    def stop_background(self) -> None:
        """Flush and go on writing synchronously (after the run, records are rare)."""
        self.flush()

    def close(self) -> None:
        self.flush()

    def health(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": not self.failed,
            "error": self.error,
            "dropped": self.dropped,
        }


_live: WeakSet[QueuedSink] = WeakSet()


def _announce(name: str, level: str, **fields: Any) -> None:
    """A sink's failure/recovery as an event, so the journal stores it and alert rules see it.

    Sent from a thread of its own: the failing sink's writer holds its I/O lock here, and
    the event goes back through every sink (this one included) and the record listeners.
    """
    from atb.logging.events import log_event

    def send() -> None:
        with contextlib.suppress(Exception):
            log_event("sink_event", name, level=level, **fields)

    threading.Thread(target=send, name="atb-sink-event", daemon=True).start()


class QueuedSink(Sink):
    """Bounded queue + writer thread; subclasses implement `format` and `write_batch`."""

    def __init__(self, config: SinkConfig, *, levelno: int, settings: SinkSettings) -> None:
        super().__init__(config, levelno=levelno, settings=settings)
        self._queue: deque[dict[str, Any]] = deque()
        self._maxsize = settings.queue_size
        self._io = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._retry_at = 0.0
        self._announce_at = 0.0
        self._lost = 0
        self._reported_drops = 0
        self._background = settings.background
        self._thread: threading.Thread | None = None
        if self._background:
            self._start_thread()
        _live.add(self)

    # -- caller side (hot path) --------------------------------------------------------

    def put(self, record: dict[str, Any], critical: bool) -> None:
        queue = self._queue
        if len(queue) >= self._maxsize and not critical:
            self.dropped += 1
            return
        queue.append(record)
        if self._thread is None:
            self._drain()
        elif critical and not self._wake.is_set():
            # warnings, errors and order/risk events are written promptly, not at the
            # next tick; routine records ride along with the periodic flush.
            self._wake.set()

    # -- writer side ---------------------------------------------------------------------

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"atb-log-{self.name}", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        interval = self.settings.flush_interval
        while not self._closed:
            self._wake.wait(interval)
            self._wake.clear()
            self._drain()

    def _drain(self) -> None:
        with self._io:
            queue = self._queue
            while queue:
                batch: list[dict[str, Any]] = []
                try:
                    while len(batch) < 4096:
                        batch.append(queue.popleft())
                except IndexError:
                    pass
                self._write(batch)
            if self.dropped != self._reported_drops:
                n = self.dropped - self._reported_drops
                self._reported_drops = self.dropped
                self._write(
                    [
                        _note(
                            30,
                            f"log sink '{self.name}': queue full, dropped {n} records"
                            " (order, risk and alert events are never dropped)",
                        )
                    ]
                )

    def _write(self, batch: list[dict[str, Any]]) -> None:
        if self.failed and time.monotonic() < self._retry_at:
            self._lost += len(batch)
            return
        try:
            data = self.format_batch(batch)
            self.write_batch(data)
        except Exception as exc:
            self._lost += len(batch)
            self._on_failure(exc)
            return
        if self.failed:
            self.failed = False
            lost, self._lost = self._lost, 0
            self.error = None
            core.internal(
                30,
                f"log sink '{self.name}' recovered; {lost} records were lost while it was failing",
            )
            _announce("log_sink_recovered", "WARNING", sink=self.name, lost=lost)

    def _on_failure(self, exc: BaseException) -> None:
        self._retry_at = time.monotonic() + RETRY_AFTER
        with contextlib.suppress(Exception):  # the retry will try again
            self.reset()
        if self.failed:
            # Again at the first failed retry (an alert rule started after the failure, e.g.
            # a file sink failing at configure time, sees it), then every REANNOUNCE_EVERY.
            now = time.monotonic()
            if now >= self._announce_at:
                self._announce_at = now + REANNOUNCE_EVERY
                self._announce_failed(still_failing=True, lost=self._lost)
            return
        self.failed = True
        self._announce_at = 0.0
        self.error = f"{type(exc).__name__}: {exc}"
        core.internal(
            40,
            f"log sink '{self.name}' failed: {self.error}; the other sinks carry on, "
            f"retrying every {RETRY_AFTER:g}s (reported once)",
            exclude=self,
        )
        self._announce_failed(retry_every_s=RETRY_AFTER)

    def _announce_failed(self, **fields: Any) -> None:
        # The first report and the re-announcements are one event name with the same
        # identifying fields, so an alert rule matches both.
        _announce(
            "log_sink_failed",
            "ERROR",
            sink=self.name,
            kind=type(self).__name__,
            error=self.error,
            **fields,
        )

    def format_batch(self, batch: list[dict[str, Any]]) -> bytes:
        fmt = self.format
        parts: list[bytes] = []
        for record in batch:
            try:
                parts.append(fmt(record))
            except Exception as exc:  # one odd record must not cost the batch
                parts.append(fmt(_note(40, f"unformattable log record: {exc!r}")))
        return b"".join(parts)

    @abstractmethod
    def format(self, record: dict[str, Any]) -> bytes:
        """Each subclass implements this."""

    @abstractmethod
    def write_batch(self, data: bytes) -> None:
        """Each subclass implements this."""

    def reset(self) -> None:
        """Drop a broken handle so the next write reopens it."""

    def flush(self) -> None:
        self._drain()

    def stop_background(self) -> None:
        self._closed = True
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)
        self._drain()

    def close(self) -> None:
        self.stop_background()

    def _after_fork(self) -> None:
        self._io = threading.Lock()
        self._wake = threading.Event()
        self._queue.clear()
        if self._thread is not None and not self._closed:
            self._start_thread()

    def health(self) -> dict[str, Any]:
        info = super().health()
        info["queued"] = len(self._queue)
        info["lost"] = self._lost
        return info


def _after_fork_in_child() -> None:
    for sink in list(_live):
        sink._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _note(levelno: int, message: str) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {
        "timestamp": datetime.now(UTC),
        "level": core.LEVEL_NAMES[levelno],
        "levelno": levelno,
        "logger": "atb.logging",
        "function": None,
        "line": None,
        "message": message,
        "event_type": None,
        "event": None,
        "context": {},
        "fields": {},
        "exception": None,
    }


# -- formats -------------------------------------------------------------------------------


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


class _StreamSink(QueuedSink):
    stream_name = "stderr"

    def write_batch(self, data: bytes) -> None:
        stream: TextIO | None = getattr(sys, self.stream_name, None)
        if stream is None:  # no console (pythonw, closed by the host)
            return
        # looked up at each write so a redirected sys.stdout/stderr (pytest, a daemon
        # wrapper) is honoured
        stream.write(data.decode("utf-8", "replace"))
        stream.flush()


class ConsoleSink(_StreamSink):
    """Human text on stderr (or stdout): message, then event fields, then context."""

    config_model: ClassVar[type[SinkConfig]] = ConsoleSinkConfig

    def __init__(self, config: SinkConfig, *, levelno: int, settings: SinkSettings) -> None:
        assert isinstance(config, ConsoleSinkConfig)
        self.stream_name = config.stream
        stream = getattr(sys, config.stream, None)
        self.colorize = (
            config.colorize
            if config.colorize is not None
            else bool(
                stream is not None
                and hasattr(stream, "isatty")
                and stream.isatty()
                and "NO_COLOR" not in os.environ
            )
        )
        self.show_context = config.show_context
        self.show_fields = config.show_fields
        super().__init__(config, levelno=levelno, settings=settings)

    def format(self, record: dict[str, Any]) -> bytes:
        return text_line(
            record,
            colorize=self.colorize,
            show_context=self.show_context,
            show_fields=self.show_fields,
        ).encode("utf-8", "replace")


class JsonSink(_StreamSink):
    """One JSON object per line on stdout."""

    config_model: ClassVar[type[SinkConfig]] = JsonSinkConfig

    def __init__(self, config: SinkConfig, *, levelno: int, settings: SinkSettings) -> None:
        assert isinstance(config, JsonSinkConfig)
        self.stream_name = config.stream
        super().__init__(config, levelno=levelno, settings=settings)

    format = staticmethod(json_line)


class FileSink(QueuedSink):
    """A file rotated by size; `retention` rotated files are kept (`.1` is the newest)."""

    config_model: ClassVar[type[SinkConfig]] = FileSinkConfig

    def __init__(self, config: SinkConfig, *, levelno: int, settings: SinkSettings) -> None:
        assert isinstance(config, FileSinkConfig)
        self.path = Path(
            config.path.format(
                run_id=settings.run_id, mode=settings.mode, output_dir=settings.output_dir
            )
        ).expanduser()
        self.max_bytes = config.rotation_bytes
        self.retention = config.retention
        self.text = config.format == "text"
        self._fh: Any = None
        self._size = 0
        self._open()  # fail at configure time if the path cannot be created at all
        super().__init__(config, levelno=levelno, settings=settings)

    def _open(self) -> None:
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "ab")  # noqa: SIM115 - held open across batches
        try:
            self._size = self._fh.tell()
        except OSError:
            self._size = 0

    def format(self, record: dict[str, Any]) -> bytes:
        if self.text:
            return text_line(record).encode("utf-8", "replace")
        return json_line(record)

    def write_batch(self, data: bytes) -> None:
        if self._fh is None:
            self._open()
        if self._size and self._size + len(data) > self.max_bytes and self.path.is_file():
            self._rotate()
        self._fh.write(data)
        self._fh.flush()
        self._size += len(data)

    def _rotate(self) -> None:
        self._fh.close()
        self._fh = None
        if self.retention == 0:
            self.path.unlink(missing_ok=True)
        else:
            oldest = self.path.with_name(f"{self.path.name}.{self.retention}")
            oldest.unlink(missing_ok=True)
            for i in range(self.retention - 1, 0, -1):
                src = self.path.with_name(f"{self.path.name}.{i}")
                if src.exists():
                    src.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._open()

    def reset(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            # what was buffered is lost; it was already counted as lost
            with contextlib.suppress(OSError):
                fh.close()

    def close(self) -> None:
        super().close()
        with self._io:
            self.reset()
