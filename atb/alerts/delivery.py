"""One worker thread per channel: bounded queue, timeout, retry with backoff, circuit breaker.

The evaluator hands a notification to each channel's worker and moves on; a slow or dead
receiver only ever holds up its own worker. Per delivery: up to `1 + retries` attempts,
each bounded by `timeout`, with `backoff` doubling up to `backoff_max` between them
(non-retryable failures, e.g. HTTP 4xx, stop at once).

Circuit breaker: after `breaker_threshold` consecutive failed deliveries the circuit
opens: deliveries fail fast (recorded as failed, "circuit open") instead of each waiting
through its retries, so a dead receiver costs nothing and the queue cannot pile up. After
`breaker_cooldown` one trial delivery is let through (half-open): success closes the
circuit, failure re-opens it. Opening and closing are events (`alert_channel_down`,
`alert_channel_recovered`) and the state is in /status.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from atb.alerts.channels import Channel, DeliveryError
from atb.alerts.model import Notification, iso

BreakerState = Literal["closed", "open", "half_open"]
# /status words (atb.health.checks.NORMAL_STATUS): an open circuit is a dead channel.
_STATUS_WORD = {"closed": "ok", "open": "down", "half_open": "degraded"}


@dataclass
class Result:
    channel: str
    ok: bool
    attempts: int = 0
    error: str | None = None
    elapsed: float = 0.0
    external: bool = True
    skipped: bool = False

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "sent" if self.ok else "failed", "attempts": self.attempts,
                               "elapsed_ms": round(self.elapsed * 1000, 1)}  # fmt: skip
        if self.error:
            out["error"] = self.error
        return out


ResultFn = Callable[[Notification, Result], None]


@dataclass
class _Job:
    notification: Notification
    done: ResultFn
    queued_at: float = field(default_factory=time.monotonic)


class ChannelWorker:
    def __init__(
        self,
        channel: Channel,
        on_state_change: Callable[[ChannelWorker, BreakerState, str | None], None] | None = None,
        sleep: Callable[[float], bool] | None = None,
    ) -> None:
        self.channel = channel
        self.config = channel.config
        self.name = channel.name
        self._queue: deque[_Job] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_state_change = on_state_change
        # Backoff waits are interruptible so stop() never waits out a long backoff.
        self._sleep = sleep or (lambda s: not self._abort.wait(s))
        self.state: BreakerState = "closed"
        self.opened_at: float | None = None
        self.consecutive_failures = 0
        self.sent = 0
        self.failed = 0
        self.fast_failed = 0
        self.retried = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_success_at: float | None = None
        self.busy = False

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"atb-alert-{self.name}",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def submit(self, notification: Notification, done: ResultFn) -> None:
        """Queue one delivery; `done` is called exactly once with its result."""
        if len(self._queue) >= self.config.queue_size:
            self.dropped += 1
            self.failed += 1
            done(notification, Result(self.name, False, 0, "queue full: delivery dropped",
                                      external=self.channel.external))  # fmt: skip
            return
        self._queue.append(_Job(notification, done))
        self._wake.set()

    def request_stop(self) -> None:
        """Stop taking new work; deliver what is queued (the router stops all at once)."""
        self._stop.set()
        self._wake.set()

    def stop(self, timeout: float) -> None:
        """Deliver what is queued within `timeout`, then report the rest as failed.

        Never takes longer than `timeout` (plus thread scheduling): the last part of the
        budget is kept to cut an attempt in flight (`Channel.cancel`) and let it report.
        """
        self.request_stop()
        thread = self._thread
        if thread is not None:
            grace = min(0.5, timeout / 4)
            thread.join(max(0.0, timeout - grace))
            if thread.is_alive():
                self._abort.set()  # cut short backoff waits and the attempt in flight
                with contextlib.suppress(Exception):
                    self.channel.cancel()
                thread.join(grace)
        while self._queue:
            try:
                job = self._queue.popleft()
            except IndexError:  # the worker took it meanwhile
                break
            self.failed += 1
            job.done(
                job.notification,
                Result(
                    self.name,
                    False,
                    0,
                    "not delivered before shutdown",
                    external=self.channel.external,
                ),
            )

    # -- the worker thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stop.is_set():
                    return
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            if self._abort.is_set():
                return
            job = self._queue.popleft()
            self.busy = True
            try:
                result = self.deliver(job.notification)
            except Exception as exc:  # the worker must survive a broken channel
                result = Result(self.name, False, 1, f"{type(exc).__name__}: {exc}",
                                external=self.channel.external)  # fmt: skip
            finally:
                self.busy = False
            with contextlib.suppress(Exception):  # recording must not kill delivery
                job.done(job.notification, result)

    def deliver(self, notification: Notification) -> Result:
        """Deliver one notification now, on the calling thread (the CLI uses this too)."""
        t0 = time.monotonic()
        cfg = self.config
        trial = False
        if self.state == "open":
            assert self.opened_at is not None
            if t0 - self.opened_at < cfg.breaker_cooldown:
                self.failed += 1
                self.fast_failed += 1
                return Result(self.name, False, 0, f"circuit open: {self.last_error}",
                              external=self.channel.external)  # fmt: skip
            self._set_state("half_open", None)
            trial = True
        attempts = 0
        delay = cfg.backoff
        error = "not attempted"
        max_attempts = 1 if trial else 1 + cfg.retries
        while attempts < max_attempts:
            attempts += 1
            try:
                self.channel.send(notification, cfg.timeout)
            except DeliveryError as exc:
                error = self.channel.redact(str(exc))
                if not exc.retryable:
                    break
            except Exception as exc:
                error = self.channel.redact(f"{type(exc).__name__}: {exc}")
            else:
                self._succeeded()
                return Result(self.name, True, attempts, None, time.monotonic() - t0,
                              self.channel.external)  # fmt: skip
            if attempts < max_attempts:
                self.retried += 1
                if not self._sleep(min(delay, cfg.backoff_max)):
                    break  # stopping: give up the remaining retries
                delay = delay * 2 if delay else 0.0
        self._failed(error)
        return Result(self.name, False, attempts, error, time.monotonic() - t0,
                      self.channel.external)  # fmt: skip

    # -- breaker ------------------------------------------------------------------------

    def _succeeded(self) -> None:
        self.sent += 1
        self.consecutive_failures = 0
        self.last_success_at = time.time()
        if self.state != "closed":
            self._set_state("closed", None)

    def _failed(self, error: str) -> None:
        self.failed += 1
        self.consecutive_failures += 1
        self.last_error = error
        self.last_error_at = time.time()
        if self.state == "half_open" or (
            self.state == "closed" and self.consecutive_failures >= self.config.breaker_threshold
        ):
            self.opened_at = time.monotonic()
            self._set_state("open", error)

    def _set_state(self, state: BreakerState, error: str | None) -> None:
        previous, self.state = self.state, state
        if state != "open":
            self.opened_at = None if state == "closed" else self.opened_at
        if self._on_state_change is not None and previous != state:
            with contextlib.suppress(Exception):  # reporting must not break delivery
                self._on_state_change(self, state, error)

    def snapshot(self) -> dict[str, Any]:
        """For /status: `state` is ok / degraded (half-open) / down (circuit open)."""
        return {
            "state": _STATUS_WORD[self.state],
            "circuit": self.state,
            "healthy": self.state == "closed",
            **self.channel.describe(),
            "external": self.channel.external,
            "queue_depth": len(self._queue),
            "sent": self.sent,
            "failed": self.failed,
            "failed_fast": self.fast_failed,
            "retries": self.retried,
            "dropped": self.dropped,
            "consecutive_failures": self.consecutive_failures,
            "last_error": self.last_error,
            "last_error_at": iso(self.last_error_at),
            "last_success_at": iso(self.last_success_at),
        }
