"""`EventInbox`: event records handed off the trading loop to one worker thread.

The alert router and the notifier both listen to every record (`atb.logging.hooks`) and do
their work on a thread of their own: the loop pays a filter and a deque append, the worker
drains. This is that hand-off, written once.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

Record = dict[str, Any]


class EventInbox:
    def __init__(self, maxsize: int, thread_name: str) -> None:
        self.records: deque[Record] = deque()
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.maxsize = maxsize
        self.thread_name = thread_name
        self._thread: threading.Thread | None = None
        self._remove_listener: Callable[[], None] | None = None

    def open(self, worker: Callable[[], None], listener: Callable[[Record], None]) -> None:
        """Start `worker` on its thread, then route every record to `listener`."""
        from atb.logging.hooks import add_record_listener

        self._thread = threading.Thread(target=worker, name=self.thread_name, daemon=True)
        self._thread.start()
        self._remove_listener = add_record_listener(listener)

    def offer(self, record: Record) -> bool:
        """On the emitting thread: queue the record; False when the inbox is full."""
        if len(self.records) >= self.maxsize:
            return False
        self.records.append(record)
        if not self.wake.is_set():
            self.wake.set()
        return True

    def close(self, timeout: float) -> None:
        """Stop listening, let the worker drain what came last, wait up to `timeout`."""
        if self._remove_listener is not None:
            with contextlib.suppress(Exception):  # a broken hook must not block shutdown
                self._remove_listener()
            self._remove_listener = None
        self.stopping.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __len__(self) -> int:
        return len(self.records)
