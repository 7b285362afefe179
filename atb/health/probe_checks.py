"""The `/status` components that judge a state provider's reading (journal, data, alerts).

Each component publishes its own state through `ctx.probes.register(name, fn)` in the trading
process; the health server process reads it over its channel (`CheckEnv.probes`).
"""

from __future__ import annotations

import math
import time
from datetime import datetime
from typing import Any, ClassVar

from pydantic import Field

from atb.health.check_base import Check, CheckConfig, worst

TIMEFRAME_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000}


def timeframe_seconds(timeframe: str) -> float | None:
    try:
        return float(int(timeframe[:-1]) * TIMEFRAME_SECONDS[timeframe[-1]])
    except (KeyError, ValueError, IndexError):
        return None


class ProbeCheckConfig(CheckConfig):
    probe: str | None = Field(None, description="probe provider name (default per class)")


NORMAL_STATUS = {
    "ok": "healthy", "healthy": "healthy", "up": "healthy", "running": "healthy",
    "degraded": "degraded", "warning": "degraded", "slow": "degraded", "spilling": "degraded",
    "unhealthy": "unhealthy", "down": "unhealthy", "failed": "unhealthy", "error": "unhealthy",
    "failing": "unhealthy", "stopped": "unhealthy",
}  # fmt: skip


class ProbeCheck(Check):
    """A component that publishes its own state through `ctx.probes.register(name, fn)`.

    A provider may state its `status` (normalised: ok/up → healthy, failing/down → the
    check's failure status, ...) or a `healthy` boolean; otherwise `assess()` judges the
    state. Without a provider the component is not running and the check is `skipped`.
    """

    config_model: ClassVar[type[CheckConfig]] = ProbeCheckConfig
    probe_name: ClassVar[str] = ""

    @property
    def probe(self) -> str:
        return getattr(self.config, "probe", None) or self.probe_name or self.default_name

    def run(self) -> dict[str, Any]:
        state = self.env.probes.read(self.probe)
        if state is None:
            return {"status": "skipped", "detail": f"no '{self.probe}' provider registered"}
        state = dict(state)
        stated = state.pop("status", None)
        status, reason = self.assess(state)
        if isinstance(stated, str) and stated.lower() in NORMAL_STATUS:
            normal = NORMAL_STATUS[stated.lower()]
            stated_status = self.failure_status if normal == "unhealthy" else normal
            status = worst([status, stated_status])
        elif state.get("healthy") is False:
            status = worst([status, self.failure_status])
        payload: dict[str, Any] = {"status": status}
        if reason:
            payload["reason"] = reason
        payload.update(state)
        return payload

    def assess(self, state: dict[str, Any]) -> tuple[str, str | None]:
        return "healthy", None


class JournalCheckConfig(ProbeCheckConfig):
    max_queue_depth: int | None = Field(
        None, ge=1, description="degraded above this many queued events (null: no limit)"
    )


class DataCheckConfig(ProbeCheckConfig):
    max_candle_age: float | None = Field(
        None, gt=0, description="degraded above this age, seconds (null: 2 × timeframe)"
    )


class JournalCheck(ProbeCheck):
    """Journal queue depth, spilled events and last error (from `Journal.state()`)."""

    config_model = JournalCheckConfig
    default_name = "journal"
    config: JournalCheckConfig

    def assess(self, state: dict[str, Any]) -> tuple[str, str | None]:
        if state.get("last_error"):
            return "degraded", "the journal's last write failed"
        depth = _number(state.get("queue_depth"))
        limit = self.config.max_queue_depth
        if limit is not None and depth is not None and depth > limit:
            return "degraded", f"queue depth {depth:g} above {limit}"
        pending = _number(state.get("spill_pending", state.get("spilled_pending")))
        if pending:
            return "degraded", f"{pending:g} events spilled to disk await replay"
        return "healthy", None


class DataCheck(ProbeCheck):
    """Age of the newest candle the loop has (`ctx.probes` "data")."""

    config_model = DataCheckConfig
    default_name = "data"
    config: DataCheckConfig

    def assess(self, state: dict[str, Any]) -> tuple[str, str | None]:
        age = candle_age(state)
        if age is None:
            return "healthy", None
        state["newest_candle_age_seconds"] = round(age, 3)
        limit = self.config.max_candle_age
        if limit is None:
            tf = timeframe_seconds(str(state.get("timeframe") or self.env.ctx.timeframe))
            limit = 2 * tf if tf else None
        if limit is not None:
            state["max_candle_age_seconds"] = limit
            if age > limit:
                return "degraded", f"newest candle is {age:.0f} s old (max {limit:g} s)"
        return "healthy", None


def candle_age(state: dict[str, Any]) -> float | None:
    """Age in seconds from whichever field the data provider publishes."""
    for key in ("newest_candle_age_seconds", "candle_age_seconds", "age_seconds"):
        age = _number(state.get(key))
        if age is not None:
            return age
    for key in ("newest_candle_at", "last_candle_at", "newest_candle_time"):
        ts = _timestamp(state.get(key))
        if ts is not None:
            return max(0.0, time.time() - ts)
    return None


class AlertsCheck(ProbeCheck):
    """Alert channel state: degraded when a channel is failing (alerts never stop trading)."""

    default_name = "alerts"

    def assess(self, state: dict[str, Any]) -> tuple[str, str | None]:
        channels = state.get("channels")
        failing: list[str] = []
        if isinstance(channels, dict):
            for name, ch in channels.items():
                if not isinstance(ch, dict):
                    continue
                if _channel_failing(ch):
                    failing.append(str(name))
        elif isinstance(channels, list):
            failing = [
                str(ch.get("name", i))
                for i, ch in enumerate(channels)
                if isinstance(ch, dict) and _channel_failing(ch)
            ]
        if failing:
            return "degraded", f"failing channels: {', '.join(sorted(failing))}"
        return "healthy", None


def _channel_failing(channel: dict[str, Any]) -> bool:
    word = str(channel.get("state") or channel.get("status") or "").lower()
    return channel.get("healthy") is False or NORMAL_STATUS.get(word) in ("unhealthy", "degraded")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _timestamp(value: Any) -> float | None:
    """Epoch seconds from epoch s/ms, a datetime or an ISO string."""
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return _timestamp(_number(value))
    number = _number(value)
    if number is None:
        return None
    return number / 1000 if number > 1e11 else number
