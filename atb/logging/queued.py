"""`QueuedSink`: a bounded queue and a writer thread of its own, the base of the built-in sinks.

Records are queued in a bounded deque and formatted + written in batches on the sink's
thread, so a slow disk or a blocked pipe never stalls the trading loop, and a batch costs
one write() call instead of one per record. When a write fails the sink reports it once,
drops what it cannot write, retries after `RETRY_AFTER` seconds, and the other sinks carry
on.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from abc import abstractmethod
from collections import deque
from typing import Any
from weakref import WeakSet

from atb.config.logging import SinkConfig
from atb.logging import core
from atb.logging.sink import Sink, SinkSettings

RETRY_AFTER = 5.0
REANNOUNCE_EVERY = 600.0  # a still-failing sink repeats its log_sink_failed event this often


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
