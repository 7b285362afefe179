"""The `alerts` node's settings, and validation of its `rules` / `channels` entries.

Each rule or channel entry names its class with `_target_`, and that class declares its
own settings model (`config_model`), exactly like run-graph nodes. The entries are
validated here, at config time, so a typo in a rule fails the run before anything starts
with the dotted key in the message (`alerts.rules.0.threshold: ...`).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from atb.alerts.model import Severity
from atb.config.base import NodeConfig, StrictModel, field_error
from atb.config.targets import TargetList, import_target


class EntryConfig(StrictModel):
    """Common to rule and channel entries: the class that implements the entry."""

    target: str = Field(alias="_target_", min_length=1)
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.\-]+$", description="unique within its list"
    )
    enabled: bool = Field(True, description="false: keep the entry in YAML but skip it")

    def display_name(self) -> str:
        """`name`, else the `default_name` of the entry's class, else the class name."""
        if self.name:
            return self.name
        fallback = self.target.rpartition(".")[2]
        try:
            cls = import_target(self.target)
        except ImportError:
            return fallback
        return str(getattr(cls, "default_name", fallback))


class RuleConfig(EntryConfig):
    """Settings every rule has (atb.alerts.rules)."""

    entry_kind: ClassVar[str] = "an alert rule"

    severity: Severity = "warning"
    dedup_window: float = Field(
        300.0,
        ge=0,
        description="a re-firing of the same rule+key within this many seconds "
        "of its last notification is a duplicate: suppressed",
    )
    renotify_interval: float | None = Field(
        3600.0, gt=0, description="remind every this many seconds while still firing (null: never)"
    )
    clear_after: float = Field(
        0.0, ge=0, description="the condition must stay false this long before 'resolved'"
    )
    summary: str | None = Field(
        None, description="str.format template over the rule's values (count, symbol, ...)"
    )
    check: str | None = Field(
        None, description="what the operator should look at first (shown in the message)"
    )


class ChannelConfig(EntryConfig):
    """Settings every channel has (atb.alerts.channels)."""

    entry_kind: ClassVar[str] = "an alert channel"

    min_severity: Severity = Field("info", description="skip alerts below this severity")
    timeout: float = Field(
        5.0, gt=0, description="seconds per delivery attempt, in total (connect + send + read)"
    )
    retries: int = Field(3, ge=0, description="extra attempts after a failed one")
    backoff: float = Field(0.5, ge=0, description="first retry delay (s); doubles per retry")
    backoff_max: float = Field(30.0, ge=0, description="retry delay cap (s)")
    breaker_threshold: int = Field(
        3, ge=1, description="consecutive failed deliveries that open the circuit"
    )
    breaker_cooldown: float = Field(
        60.0, gt=0, description="seconds an open circuit fails fast before one trial delivery"
    )
    queue_size: int = Field(1000, ge=1, description="notifications waiting for this channel")


RunMode = Literal["backtest", "paper", "live", "train"]


def _alerting_modes() -> list[RunMode]:
    return ["paper", "live"]


class AlertsConfig(NodeConfig):
    modes: list[RunMode] = Field(
        default_factory=_alerting_modes,
        description="run modes the router is active in (a backtest's rejections page nobody)",
    )
    tick: float = Field(1.0, gt=0, le=60, description="seconds between time-based evaluations")
    queue_size: int = Field(10_000, ge=1, description="events held for the evaluator")
    stop_timeout: float = Field(
        5.0, ge=0, description="seconds stop() waits for deliveries, in total (never more)"
    )
    record_delay: float = Field(
        2.0,
        ge=0,
        description="an alert still being delivered after this many seconds is recorded "
        "anyway (alert_method=pending:...); its outcome follows as an alert_delivery row",
    )
    record_suppressed: bool = Field(
        True, description="journal duplicates that were suppressed (alert_method=suppressed)"
    )
    warn_without_channel: bool = Field(
        True, description="warn loudly when a live run has no external channel configured"
    )
    rules: TargetList[RuleConfig] = Field(default_factory=list)
    channels: TargetList[ChannelConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_names(self) -> AlertsConfig:
        lists: tuple[tuple[str, list[Any]], ...] = (
            ("rules", self.rules),
            ("channels", self.channels),
        )
        for what, entries in lists:
            seen: dict[str, int] = {}
            for i, entry in enumerate(entries):
                name = entry.display_name()
                if name in seen:
                    raise field_error(
                        f"{what}.{i}.name",
                        f"duplicate name '{name}' (also {what}.{seen[name]}); set a unique name",
                    )
                seen[name] = i
        return self
