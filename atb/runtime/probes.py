"""Process-wide run state that components publish and the health server reads.

The trading loop, the journal, the alert router and the data feed each publish here
instead of knowing about the health server; the health server only reads. Reads are
lock-free snapshots so a busy engine can never block a probe.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

StateFn = Callable[[], dict[str, Any]]


@dataclass
class Heartbeat:
    """The trading loop's pulse: beaten once per iteration, after the data fetch."""

    started_at: float | None = None  # wall clock
    last_beat: float | None = None  # monotonic
    last_beat_wall: float | None = None
    iterations: int = 0
    interval: float | None = None  # the loop's expected period (check_interval)
    info: dict[str, Any] = field(default_factory=dict)

    def start(self, interval: float | None = None) -> None:
        self.started_at = time.time()
        self.interval = interval
        self.last_beat = None
        self.last_beat_wall = None
        self.iterations = 0

    def beat(self, **info: Any) -> None:
        self.last_beat = time.monotonic()
        self.last_beat_wall = time.time()
        self.iterations += 1
        if info:
            self.info = info

    def age(self) -> float | None:
        return None if self.last_beat is None else time.monotonic() - self.last_beat

    def snapshot(self) -> dict[str, Any]:
        age = self.age()
        return {
            "started": self.started_at is not None,
            "started_at": self.started_at,
            "iterations": self.iterations,
            "last_beat_at": self.last_beat_wall,
            "heartbeat_age_seconds": None if age is None else round(age, 3),
            "interval_seconds": self.interval,
            **({"info": dict(self.info)} if self.info else {}),
        }


class Probes:
    """Named state providers (journal, alerts, data, exchange) plus the loop heartbeat."""

    def __init__(self) -> None:
        self.heartbeat = Heartbeat()
        self._providers: dict[str, StateFn] = {}
        self._lock = threading.Lock()

    def register(self, name: str, fn: StateFn) -> Callable[[], None]:
        with self._lock:
            self._providers[name] = fn

        def unregister() -> None:
            with self._lock:
                if self._providers.get(name) is fn:
                    del self._providers[name]

        return unregister

    def get(self, name: str) -> StateFn | None:
        return self._providers.get(name)

    def names(self) -> list[str]:
        return sorted(self._providers)

    def read(self, name: str) -> dict[str, Any] | None:
        fn = self._providers.get(name)
        return None if fn is None else fn()

    def reset(self) -> None:
        with self._lock:
            self._providers.clear()
        self.heartbeat = Heartbeat()


PROBES = Probes()
