"""One verdict on the trading loop, from its heartbeat, for every surface that shows it.

The health server judges the in-process `ctx.probes.heartbeat`; the monitoring dashboard judges
the copy the loop writes to the `run_heartbeats` table (atb.engine.heartbeat_store). Both
call `judge()`, so `/health`, `/livez`, `/readyz`, `/status`, `/metrics`, the `loop_stalled`
alert and the dashboard cannot disagree on what "stalled" means.

States (README "Loop states and endpoints" gives the HTTP codes):
- `starting`: the loop has not completed an iteration yet and no fetch has failed;
- `running`: the last iteration fetched data, and it was recent;
- `degraded`: the loop is alive but its last iteration(s) failed (exchange unreachable,
  malformed data): the start-up grace ends at the first failed fetch;
- `stalled`: no pulse (beat or failure) for `silence_limit` seconds: hung, or killed;
- `not_started`: the loop never pulsed within the start-up grace;
- `stopping`: SIGINT/SIGTERM received, the loop is finishing its iteration;
- `stopped`: the loop has ended (finished, stopped or failed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from atb.runtime.probes import silence_limit

ALIVE_STATES = frozenset({"starting", "running", "degraded", "stopping"})
"""States in which the loop still runs (liveness probes pass)."""


@dataclass(frozen=True)
class Verdict:
    state: str
    reason: str | None
    limit: float
    pulse_age: float | None

    @property
    def alive(self) -> bool:
        return self.state in ALIVE_STATES


def judge(
    *,
    waited: float | None,
    pulse_age: float | None,
    interval: float | None,
    extra_wait: float = 0.0,
    failures: int = 0,
    last_error: str | None = None,
    stopping: bool = False,
    stopped_reason: str | None = None,
    stopped: bool = False,
    startup_grace: float = 120.0,
    max_silence: float | None = None,
) -> Verdict:
    """`waited`: seconds since the loop (or, before it, the observer) started."""
    limit = (max_silence if max_silence is not None else silence_limit(interval)) + extra_wait
    if stopped:
        why = f" ({stopped_reason})" if stopped_reason else ""
        return Verdict("stopped", f"trading loop has stopped{why}", limit, pulse_age)
    if stopping:
        return Verdict("stopping", "the run is stopping", limit, pulse_age)
    if pulse_age is None:
        if waited is not None and waited > startup_grace:
            reason = f"trading loop has not beaten within the {startup_grace:g} s start-up grace"
            return Verdict("not_started", reason, limit, None)
        return Verdict("starting", None, limit, None)
    if pulse_age > limit:
        reason = f"trading loop has not beaten for {pulse_age:.1f} s (max {limit:g} s)"
        return Verdict("stalled", reason, limit, pulse_age)
    if failures > 0:
        reason = f"{failures} failed iteration(s) in a row: {last_error or 'unknown error'}"
        return Verdict("degraded", reason, limit, pulse_age)
    return Verdict("running", None, limit, pulse_age)


def judge_snapshot(
    snap: dict[str, Any], *, waited: float | None, stopping: bool = False, **kw: Any
) -> Verdict:
    """`judge()` on a `Heartbeat.snapshot()` (or the same fields read back from the DB)."""
    return judge(
        waited=waited,
        pulse_age=snap.get("pulse_age_seconds"),
        interval=snap.get("interval_seconds"),
        extra_wait=float(snap.get("extra_wait_seconds") or 0.0),
        failures=int(snap.get("failures") or 0),
        last_error=snap.get("last_error"),
        stopping=stopping,
        stopped=snap.get("stopped_at") is not None,
        stopped_reason=snap.get("stop_reason"),
        **kw,
    )
