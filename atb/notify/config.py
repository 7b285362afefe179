"""Settings of the `notify` node: its routes, their rate limits, the daily summary."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from atb.alerts.config import RunMode
from atb.alerts.model import Severity
from atb.config.base import NodeConfig, StrictModel


class RouteConfig(StrictModel):
    enabled: bool = True
    events: list[str] = Field(min_length=1, description="event names this route notifies on")
    rate_limit: int = Field(
        20, ge=0, description="at most this many notifications per `per` seconds (0: no limit)"
    )
    per: float = Field(60.0, gt=0, description="the rate limit's window (s)")
    severity: Severity = "info"


def _route(events: list[str], rate_limit: int, per: float, severity: str = "info") -> Any:
    return lambda: RouteConfig.model_validate(
        {"events": events, "rate_limit": rate_limit, "per": per, "severity": severity}
    )


class RoutesConfig(StrictModel):
    trade_opened: RouteConfig = Field(default_factory=_route(["open_position"], 20, 60))
    trade_closed: RouteConfig = Field(default_factory=_route(["close_position"], 20, 60))
    order_rejected: RouteConfig = Field(
        default_factory=_route(["order_rejected"], 3, 300, "warning")
    )
    session_started: RouteConfig = Field(default_factory=_route(["engine_start"], 5, 3600))
    session_stopped: RouteConfig = Field(default_factory=_route(["engine_stop"], 5, 3600))


class DailySummaryConfig(StrictModel):
    enabled: bool = True
    at: str = Field("00:00", description="time of day, HH:MM or HH:MM:SS")
    timezone: str = Field("UTC", description="IANA zone `at` is in, e.g. Europe/Berlin")

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        if not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d)?", value.strip()):
            raise ValueError("must be a time of day, HH:MM or HH:MM:SS (e.g. 20:00)")
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}' (e.g. UTC, Europe/Berlin)") from None
        return value


def _notify_modes() -> list[RunMode]:
    return ["paper", "live"]


class NotifyConfig(NodeConfig):
    modes: list[RunMode] = Field(
        default_factory=_notify_modes, description="run modes that notify (never backtests)"
    )
    channels: list[str] | None = Field(
        None,
        description="alert channels to notify through, by name ('apprise' means every "
        "apprise.* URL); null: every external channel",
    )
    queue_size: int = Field(10_000, ge=1, description="events held for the notifier")
    stop_timeout: float = Field(2.0, ge=0, description="seconds stop() drains the queue")
    routes: RoutesConfig = Field(default_factory=RoutesConfig)
    daily_summary: DailySummaryConfig = Field(default_factory=DailySummaryConfig)

    @field_validator("modes")
    @classmethod
    def _no_backtest(cls, value: list[str]) -> list[str]:
        if "backtest" in value:
            raise ValueError("backtests never notify (a simulated trade pages nobody)")
        return value
