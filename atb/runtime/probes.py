"""Run state that components publish and the health server reads (`RunContext.probes`).

The trading loop, the journal, the alert router and the data feed each publish in their
run's `Probes` instead of knowing about the health server; the health server only reads. Reads are
lock-free snapshots so a busy engine can never block a probe.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from atb.runtime.clock import SYSTEM_CLOCK, Clock

StateFn = Callable[[], dict[str, Any]]


MIN_SILENCE = 2.0
"""Floor (seconds) on the silence that makes a loop stalled: at very fast intervals
(check_interval=0.05) one slow iteration (a DB write, a GC pause) must not read as a stall."""


def silence_limit(interval: float | None, fallback: float = 60.0) -> float:
    """Seconds without a pulse after which a loop counts as stalled: 3 × its interval,
    never below MIN_SILENCE. Shared by /health, the alert rule and the dashboards."""
    period = interval if interval and interval > 0 else fallback
    return max(3.0 * period, MIN_SILENCE)


@dataclass
class Heartbeat:
    """The trading loop's pulse.

    `beat()` once per iteration that fetched data; `fail()` once per iteration whose fetch
    failed (the loop is alive but cannot trade: degraded, and the start-up grace is over);
    `expect(wait)` before the loop sleeps longer than its interval (a failure cooldown), so
    the wait is not mistaken for a stall; `stop()` when the loop has ended.
    """

    started_at: float | None = None  # wall clock
    last_beat: float | None = None  # monotonic
    last_beat_wall: float | None = None
    iterations: int = 0
    interval: float | None = None  # the loop's expected period (check_interval)
    info: dict[str, Any] = field(default_factory=dict)
    last_pulse: float | None = None  # monotonic: last beat or failure
    last_pulse_wall: float | None = None
    failures: int = 0  # consecutive failed iterations since the last beat
    last_error: str | None = None
    extra_wait: float = 0.0  # seconds beyond `interval` the loop announced it will sleep
    stopped_at: float | None = None  # wall clock; the loop has ended
    stop_reason: str | None = None
    clock: Clock = field(default=SYSTEM_CLOCK, repr=False, compare=False)

    def start(self, interval: float | None = None, clock: Clock | None = None) -> None:
        if clock is not None:
            self.clock = clock
        self.started_at = self.clock.time()
        self.interval = interval
        self.last_beat = None
        self.last_beat_wall = None
        self.last_pulse = None
        self.last_pulse_wall = None
        self.iterations = 0
        self.failures = 0
        self.last_error = None
        self.extra_wait = 0.0
        self.stopped_at = None
        self.stop_reason = None

    def _pulse(self) -> None:
        self.last_pulse = self.clock.monotonic()
        self.last_pulse_wall = self.clock.time()

    def beat(self, **info: Any) -> None:
        self.last_beat = self.clock.monotonic()
        self.last_beat_wall = self.clock.time()
        self.last_pulse, self.last_pulse_wall = self.last_beat, self.last_beat_wall
        self.iterations += 1
        self.failures = 0
        self.last_error = None
        self.extra_wait = 0.0
        if info:
            self.info = info

    def fail(self, error: str) -> None:
        self._pulse()
        self.failures += 1
        self.last_error = error[:300]

    def expect(self, wait: float) -> None:
        self.extra_wait = max(0.0, wait - (self.interval or 0.0))

    def stop(self, reason: str) -> None:
        self.stopped_at = self.clock.time()
        self.stop_reason = reason

    def age(self) -> float | None:
        return None if self.last_beat is None else self.clock.monotonic() - self.last_beat

    def pulse_age(self) -> float | None:
        return None if self.last_pulse is None else self.clock.monotonic() - self.last_pulse

    def silence_limit(self, fallback: float = 60.0) -> float:
        return silence_limit(self.interval, fallback) + self.extra_wait

    def snapshot(self) -> dict[str, Any]:
        age = self.age()
        pulse_age = self.pulse_age()
        return {
            "started": self.started_at is not None,
            "started_at": self.started_at,
            "iterations": self.iterations,
            "last_beat_at": self.last_beat_wall,
            "heartbeat_age_seconds": None if age is None else round(age, 3),
            "last_pulse_at": self.last_pulse_wall,
            "pulse_age_seconds": None if pulse_age is None else round(pulse_age, 3),
            "interval_seconds": self.interval,
            "extra_wait_seconds": self.extra_wait,
            "failures": self.failures,
            "last_error": self.last_error,
            "stopped_at": self.stopped_at,
            "stop_reason": self.stop_reason,
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
