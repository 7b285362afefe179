"""Is this paper/live session's loop running? Judged from its `run_heartbeats` row.

Same verdict as `/health` (atb.runtime.liveness.judge), with the floor raised by the
heartbeat writer's lag (atb.engine.heartbeat_store.MAX_PERIOD): a session whose process
was killed (`kill -9`) or whose loop hangs shows "not running — no heartbeat since …"
within 3 × its check interval (never less than the floor), on a page that was already
open or a fresh one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from atb.dashboards.tables import utc
from atb.engine.heartbeat_store import MAX_PERIOD
from atb.runtime.liveness import judge
from atb.runtime.probes import MIN_SILENCE, silence_limit

LABELS = {
    "starting": "starting",
    "running": "running",
    "degraded": "degraded",
    "stalled": "not running",
    "not_started": "not running",
    "stopping": "stopping",
    "stopped": "stopped",
}


def session_liveness(
    hb: dict[str, Any], now: datetime | None = None
) -> tuple[str, str, datetime | None]:
    """(label, reason, last heartbeat) of a session whose run row still says running."""
    now = now or datetime.now(UTC)
    pulse_at = utc(hb.get("pulse_at"))
    started = utc(hb.get("started_at"))
    interval = hb.get("interval_seconds")
    verdict = judge(
        waited=None if started is None else (now - started).total_seconds(),
        pulse_age=None if pulse_at is None else max(0.0, (now - pulse_at).total_seconds()),
        interval=interval,
        extra_wait=float(hb.get("extra_wait_seconds") or 0.0),
        failures=int(hb.get("failures") or 0),
        last_error=hb.get("last_error"),
        stopped=hb.get("stopped_at") is not None,
        stopped_reason=hb.get("stop_reason"),
        # The row lags the loop by at most one writer period (<= interval / 2): within
        # 3 × interval that is covered; under the floor it is added.
        max_silence=max(silence_limit(interval), MIN_SILENCE + MAX_PERIOD),
    )
    label = LABELS.get(verdict.state, verdict.state)
    if verdict.state in ("stalled", "not_started"):
        since = pulse_at or started
        when = f"{since:%Y-%m-%d %H:%M:%S} UTC" if since else "the start"
        age = "" if verdict.pulse_age is None else f" ({verdict.pulse_age:,.0f} s ago"
        age += f", expected every {interval:g} s)" if age and interval else (")" if age else "")
        reason = (
            f"no heartbeat since {when}{age}: the process was killed or its loop is hung"
            f" (pid {hb.get('pid')})"
        )
        return label, reason, pulse_at
    if verdict.state == "running":
        return label, f"heartbeat every {interval:g} s", pulse_at
    return label, verdict.reason or "", pulse_at
