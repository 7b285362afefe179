"""What the health endpoints answer, computed in the server process.

`HealthService` holds the latest state the trading process published (its heartbeat
fields, whether the run is stopping, when the last update came) and turns it into the
payloads of /health, /livez, /readyz, /status and /metrics. Ages are exact although the
state arrives in batches: the heartbeat carries `time.monotonic()` stamps, and both
processes read the same system-wide monotonic clock.

If updates stop for `publish_timeout` seconds the trading process is stopped, hung or
swapping: the loop is reported `stalled` whatever its last state said, so a frozen
process never keeps answering OK.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from atb.api.handlers import authorizer
from atb.api.schemas import Loop
from atb.health import metrics
from atb.health.cache import CheckCache, CheckResult
from atb.health.checks import SEVERITY, Check, worst
from atb.health.config import HealthServerConfig
from atb.health.link import Link
from atb.logging.redaction import get_redactor, redact_obj
from atb.runtime.context import RunContext
from atb.runtime.liveness import Verdict, judge_snapshot
from atb.runtime.probes import Heartbeat, silence_limit

# Without a configured max_silence and before the loop announces its interval.
FALLBACK_INTERVAL = 60.0

ENDPOINT_CODES: dict[str, dict[str, int]] = {
    # Kubernetes conventions: /livez fails only when a restart would help (the loop is
    # dead or hung), /readyz only passes while the loop trades; /health answers "is it
    # trading?" for uptime monitors (the seed's contract); /status adds the components.
    "/livez": {"starting": 200, "running": 200, "degraded": 200, "stopping": 200,
               "stalled": 503, "not_started": 503, "stopped": 503},
    "/health": {"starting": 200, "running": 200, "degraded": 503, "stopping": 503,
                "stalled": 503, "not_started": 503, "stopped": 503},
    "/readyz": {"starting": 503, "running": 200, "degraded": 503, "stopping": 503,
                "stalled": 503, "not_started": 503, "stopped": 503},
}  # fmt: skip
"""HTTP code per loop state (README "Loop states and endpoints"); /status follows LOOP_STATUS."""

LOOP_STATUS: dict[str, str] = {
    "starting": "healthy", "running": "healthy", "degraded": "degraded",
    "stopping": "unhealthy", "stalled": "unhealthy", "not_started": "unhealthy",
    "stopped": "unhealthy",
}  # fmt: skip
"""What each loop state contributes to the /status verdict."""

# The families the server process sets itself at scrape time; every other family on
# /metrics is the trading process's own registry, rendered there.
SCRAPE_FAMILIES = (
    "atb_loop_heartbeat_age_seconds",
    "atb_loop_max_silence_seconds",
    "atb_loop_up",
    "atb_loop_state",
    "atb_health_check_status",
    "atb_health_check_duration_seconds",
)

# The heartbeat's state, not its clock (the server process reads the system clock).
HEARTBEAT_FIELDS = tuple(f.name for f in fields(Heartbeat) if f.name != "clock")


def heartbeat_fields(hb: Heartbeat) -> dict[str, Any]:
    """What the trading process sends of its heartbeat (monotonic stamps included)."""
    return {name: getattr(hb, name) for name in HEARTBEAT_FIELDS}


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=str, separators=(",", ":")).encode()


def redact_payload(
    payload: dict[str, Any], secrets: frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Every payload leaves through the run's one redactor (keys, patterns, secret values)."""
    out = redact_obj(payload, secrets)
    return out if isinstance(out, dict) else {}


class HealthService:
    def __init__(
        self,
        config: HealthServerConfig,
        ctx: RunContext,
        checks: list[Check],
        link: Link,
        *,
        token: str | None,
        started_wall: float,
    ) -> None:
        self.config = config
        self.ctx = ctx
        self.checks = checks
        self.link = link
        self.token = token
        # No token configured: open (the node refused that beyond loopback).
        self.authorized = authorizer(token)
        self.started_wall = started_wall
        self.heartbeat = Heartbeat()
        self.stopping = False
        self.supervisor: dict[str, Any] = {}
        self.last_update = time.monotonic()
        self.cache: CheckCache | None = None
        self.http: Any = None
        self._metrics_page: tuple[float, bytes] | None = None
        self._metrics_pending: asyncio.Future[bytes] | None = None

    # -- state from the trading process -------------------------------------------------------

    def update(self, state: dict[str, Any]) -> None:
        """Link thread: one state update. Assignments only, so readers need no lock."""
        hb = state.get("heartbeat")
        if isinstance(hb, dict):
            self.heartbeat = Heartbeat(**{k: v for k, v in hb.items() if k in HEARTBEAT_FIELDS})
        self.stopping = bool(state.get("stopping"))
        if isinstance(state.get("supervisor"), dict):
            self.supervisor = state["supervisor"]
        self.last_update = time.monotonic()

    def api_loop(self) -> Loop:
        """The loop's verdict as the JSON API shows it (/api/system/status)."""
        _, loop = self.loop_state()
        beat = loop.get("last_beat_at")
        return Loop(
            state=loop["state"],
            reason=loop.get("reason"),
            iterations=loop.get("iterations"),
            last_beat_at=None if beat is None else datetime.fromtimestamp(beat, UTC),
            source="process",
        )

    # -- the loop's verdict -------------------------------------------------------------------

    def _verdict(self, snap: dict[str, Any], waited: float) -> Verdict:
        max_silence = self.config.max_silence
        if max_silence is None and not self.heartbeat.interval:
            max_silence = silence_limit(FALLBACK_INTERVAL)
        verdict = judge_snapshot(
            snap,
            waited=waited,
            stopping=self.stopping,
            startup_grace=self.config.startup_grace,
            max_silence=max_silence,
        )
        silent = time.monotonic() - self.last_update
        if silent > self.config.publish_timeout:
            reason = (
                f"the trading process has sent no state for {silent:.1f} s "
                f"(max {self.config.publish_timeout:g} s): stopped, hung or swapping"
            )
            return Verdict("stalled", reason, verdict.limit, verdict.pulse_age)
        return verdict

    def loop_state(self) -> tuple[bool, dict[str, Any]]:
        """(alive, payload): the trading loop's state from its heartbeat alone."""
        hb = self.heartbeat
        snap = hb.snapshot()
        since = hb.started_at if hb.started_at is not None else self.started_wall
        waited = max(0.0, time.time() - since)
        verdict = self._verdict(snap, waited)
        loop: dict[str, Any] = {
            "state": verdict.state,
            "heartbeat_age_seconds": snap["heartbeat_age_seconds"],
            "pulse_age_seconds": snap["pulse_age_seconds"],
            "max_silence_seconds": verdict.limit,
            "iterations": snap["iterations"],
            "started_at": snap["started_at"],
            "last_beat_at": snap["last_beat_at"],
            "interval_seconds": snap["interval_seconds"],
        }
        if snap["failures"]:
            loop["failures"] = snap["failures"]
            loop["last_error"] = snap["last_error"]
        if snap["stopped_at"] is not None:
            loop["stopped_at"] = snap["stopped_at"]
        if verdict.pulse_age is None and verdict.state in ("starting", "not_started"):
            loop["waiting_seconds"] = round(waited, 3)
        if verdict.reason:
            loop["reason"] = verdict.reason
        if snap.get("info"):
            loop["info"] = snap["info"]
        return verdict.alive, redact_payload(loop, self.ctx.secrets)

    # -- payloads -------------------------------------------------------------------------------

    def health_payload(self) -> tuple[int, dict[str, Any]]:
        _, loop = self.loop_state()
        code = ENDPOINT_CODES["/health"][loop["state"]]
        status = "healthy" if code == 200 else LOOP_STATUS.get(loop["state"], "unhealthy")
        payload: dict[str, Any] = {
            "status": status,
            "timestamp": iso_now(),
            "service": self.config.service,
        }
        if code != 200:
            payload["reason"] = loop.get("reason")
        payload["loop"] = loop
        return code, payload

    def livez_payload(self) -> tuple[int, dict[str, Any]]:
        alive, loop = self.loop_state()
        payload: dict[str, Any] = {"status": "alive" if alive else "dead", "timestamp": iso_now()}
        if not alive:
            payload["reason"] = loop.get("reason")
        payload["loop"] = {k: loop.get(k) for k in ("state", "heartbeat_age_seconds")}
        return ENDPOINT_CODES["/livez"][loop["state"]], payload

    def run_info(self) -> dict[str, Any]:
        return {
            "run_id": self.ctx.run_id,
            "mode": self.ctx.mode,
            "strategy": self.ctx.strategy,
            "symbol": self.ctx.symbol,
            "timeframe": self.ctx.timeframe,
            "uptime_seconds": round(time.time() - self.started_wall, 3),
        }

    async def status_payload(self) -> tuple[int, dict[str, Any]]:
        t0 = time.perf_counter()
        _, loop = self.loop_state()
        assert self.cache is not None
        results = await self.cache.results()
        components: dict[str, Any] = {name: r.payload() for name, r in results.items()}
        statuses = [r.status for r in results.values()]
        reasons = [
            f"{name}: {r.status}" for name, r in results.items() if SEVERITY.get(r.status, 2) > 0
        ]
        loop_status = LOOP_STATUS.get(loop["state"], "unhealthy")
        if loop_status != "healthy":
            statuses.append(loop_status)
            reasons.insert(0, f"loop: {loop.get('reason')}")
        overall = worst(statuses)
        payload: dict[str, Any] = {
            "status": overall,
            "timestamp": iso_now(),
            "service": self.config.service,
            "run": self.run_info(),
            "loop": loop,
            "components": components,
            "server": self.server_info(),
        }
        if reasons:
            payload["reasons"] = reasons
        payload["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        payload = redact_payload(payload, self.ctx.secrets)
        code = {"healthy": 200, "degraded": self.config.degraded_status_code}.get(overall, 503)
        return code, payload

    def server_info(self) -> dict[str, Any]:
        """The server process itself: its connections and how often it was restarted."""
        info: dict[str, Any] = dict(self.supervisor)
        if self.http is not None:
            info.update(self.http.stats())
        return info

    async def ready_payload(self) -> tuple[int, dict[str, Any]]:
        assert self.cache is not None
        results = await self.cache.results()
        failing = [name for name, r in results.items() if r.readiness and r.status == "unhealthy"]
        reasons = [f"{name}: {_short(r)}" for name, r in results.items() if name in failing]
        _, loop = self.loop_state()
        if ENDPOINT_CODES["/readyz"][loop["state"]] != 200:
            reasons.insert(0, f"loop: {loop.get('reason') or loop['state']}")
        ready = not reasons
        payload: dict[str, Any] = {
            "status": "ready" if ready else "not_ready",
            "timestamp": iso_now(),
            "service": self.config.service,
            "checks": {name: r.status for name, r in results.items()},
        }
        if reasons:
            payload["reasons"] = reasons
        return (200 if ready else 503), redact_payload(payload, self.ctx.secrets)

    # -- metrics --------------------------------------------------------------------------------

    async def metrics_page(self) -> bytes:
        """The trading process's registry (rendered there, reused for `metrics_ttl`) with the
        scrape-time families set here spliced in. Concurrent scrapes share one render."""
        cached = self._metrics_page
        if cached is not None and time.monotonic() - cached[0] < self.config.metrics_ttl:
            return cached[1]
        if self._metrics_pending is None:
            future = asyncio.wrap_future(self.link.request_future("metrics"))
            self._metrics_pending = asyncio.ensure_future(self._render(future))
        pending = self._metrics_pending
        try:
            return await asyncio.shield(pending)
        finally:
            if pending.done():
                self._metrics_pending = None

    async def _render(self, remote: asyncio.Future[Any]) -> bytes:
        answer = await remote
        labels = answer.get("labels") or {}
        metrics.set_run_labels(**{k: labels.get(k) for k in ("mode", "strategy", "symbol")})
        self.refresh_gauges()
        local = metrics.render_families(SCRAPE_FAMILIES)
        page = metrics.splice(str(answer.get("text", "")), local).encode()
        self._metrics_page = (time.monotonic(), page)
        return page

    def refresh_gauges(self) -> None:
        alive, loop = self.loop_state()
        metrics.set_heartbeat_age(self.heartbeat.age(), loop["max_silence_seconds"])
        metrics.set_loop_state(loop["state"], alive)

    async def refresh_forever(self, interval: float) -> None:
        """Run the checks on a timer (through the cache: single flight, timeouts), so a
        Prometheus that only scrapes /metrics sees current atb_health_check_status."""
        assert self.cache is not None
        while True:
            try:
                await self.cache.results()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the next round tries again; probes are unaffected
                self.link_log("debug", f"background refresh failed: {exc}")
            await asyncio.sleep(interval)

    def link_log(self, level: str, message: str) -> None:
        """Log through the trading process's pipeline (redaction, sinks, journal)."""
        try:
            self.link.event(t="log", level=level, msg=get_redactor().redact_text(message))
        except ConnectionError:
            return


def _short(result: CheckResult) -> str:
    d = result.details
    return str(d.get("error") or d.get("reason") or d.get("detail") or result.status)
