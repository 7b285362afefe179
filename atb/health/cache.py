"""Run checks concurrently off the IOLoop, with timeouts, a TTL cache and single flight.

Runs in the health server process. All bookkeeping happens on its IOLoop thread (no
locks); only `Check.run()` runs on the worker pool. Guarantees:
- a result younger than its TTL is reused, so monitors polling every second cannot hammer
  the exchange or the database (failures are cached too);
- at most one run per check is in flight: concurrent requests share it, and a hung check
  is never started again while it is still running, so threads cannot pile up;
- a request waits at most the check's timeout, measured from when the run started; after
  that the check reports `timeout` with its failure status.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from atb.health import metrics
from atb.health.check_base import Check
from atb.logging.redaction import redact_obj, redact_text


@dataclass
class CheckResult:
    name: str
    status: str
    details: dict[str, Any]
    duration: float | None
    checked_at: float  # wall clock
    readiness: bool = True

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status, **self.details}
        if self.duration is not None:
            out["check_ms"] = round(self.duration * 1000, 2)
        out["checked_at"] = round(self.checked_at, 3)
        return out


@dataclass
class _Entry:
    check: Check
    timeout: float
    ttl: float
    result: CheckResult | None = None
    result_at: float = 0.0  # monotonic
    pending: asyncio.Future[CheckResult] | None = None
    started_at: float = 0.0  # monotonic
    runs: int = field(default=0)


class CheckCache:
    def __init__(
        self,
        checks: list[Check],
        executor: Executor,
        default_timeout: float,
        default_ttl: float,
        secrets: frozenset[str] = frozenset(),
    ) -> None:
        self.executor = executor
        self.secrets = secrets
        self.entries: dict[str, _Entry] = {
            c.name: _Entry(
                check=c,
                timeout=c.config.timeout or default_timeout,
                ttl=default_ttl if c.config.ttl is None else c.config.ttl,
            )
            for c in checks
        }

    async def results(self) -> dict[str, CheckResult]:
        names = list(self.entries)
        got = await asyncio.gather(*(self._get(self.entries[n]) for n in names))
        return dict(zip(names, got, strict=True))

    async def _get(self, entry: _Entry) -> CheckResult:
        now = time.monotonic()
        if entry.result is not None and now - entry.result_at < entry.ttl:
            return entry.result
        if entry.pending is None:
            loop = asyncio.get_running_loop()
            entry.started_at = now
            entry.runs += 1
            future = asyncio.wrap_future(self.executor.submit(self._run, entry.check), loop=loop)
            entry.pending = future
            future.add_done_callback(functools.partial(self._store, entry))
        remaining = entry.timeout - (now - entry.started_at)
        if remaining > 0:
            try:
                # shield: one impatient request must not cancel the run others share.
                return await asyncio.wait_for(asyncio.shield(entry.pending), remaining)
            except TimeoutError:
                pass
        result = self._timed_out(entry)
        entry.result, entry.result_at = result, time.monotonic()
        return result

    def _store(self, entry: _Entry, future: asyncio.Future[CheckResult]) -> None:
        entry.pending = None
        if future.cancelled():
            return
        exc = future.exception()
        result = self._failed(entry.check, exc, None) if exc is not None else future.result()
        entry.result, entry.result_at = result, time.monotonic()

    def _timed_out(self, entry: _Entry) -> CheckResult:
        check = entry.check
        running = time.monotonic() - entry.started_at
        details = {
            "error": "timeout",
            "message": f"no answer within {entry.timeout:g} s (running for {running:.1f} s)",
            **_failure_details(check),
        }
        metrics.set_check(check.name, check.failure_status, running)
        return CheckResult(
            check.name, check.failure_status, details, None, time.time(), check.config.readiness
        )

    def _run(self, check: Check) -> CheckResult:
        """Worker thread: run one check, never raise."""
        t0 = time.perf_counter()
        try:
            payload = dict(check.run())
        except Exception as exc:
            return self._failed(check, exc, time.perf_counter() - t0)
        duration = time.perf_counter() - t0
        status = str(payload.pop("status", "healthy"))
        details = redact_obj(payload, self.secrets)
        metrics.set_check(check.name, status, duration)
        return CheckResult(
            check.name, status, details, duration, time.time(), check.config.readiness
        )

    def _failed(self, check: Check, exc: BaseException, duration: float | None) -> CheckResult:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        details = {
            "error": type(exc).__name__,
            "message": redact_text(message[:300], self.secrets),
            **_failure_details(check),
        }
        metrics.set_check(check.name, check.failure_status, duration)
        return CheckResult(
            check.name, check.failure_status, details, duration, time.time(), check.config.readiness
        )

    def close(self) -> None:
        for entry in self.entries.values():
            # A check that fails to close must not block shutdown.
            with contextlib.suppress(Exception):
                entry.check.close()


def _failure_details(check: Check) -> dict[str, Any]:
    try:
        return dict(check.failure_details())
    except Exception:  # a broken hook must not hide the failure it describes
        return {}
