"""The built-in log sinks: console text, JSON lines, rotating files.

Each is a `QueuedSink` (atb.logging.queued): its own writer thread, batched writes, one
report on failure. The contract for your own sink is `atb.logging.sink.Sink`.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, ClassVar, TextIO

from atb.config.logging import (
    ConsoleSinkConfig,
    FileSinkConfig,
    JsonSinkConfig,
    SinkConfig,
)
from atb.logging.formats import json_line, text_line
from atb.logging.queued import QueuedSink
from atb.logging.sink import SinkSettings


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
