"""The `alerts` node's settings, and validation of its `rules` / `channels` entries.

Each rule or channel entry names its class with `_target_`, and that class declares its
own settings model (`config_model`), exactly like run-graph nodes. The entries are
validated here, at config time, so a typo in a rule fails the run before anything starts
with the dotted key in the message (`alerts.rules.0.threshold: ...`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from atb.config.base import NodeConfig, StrictModel, field_error


class EntryConfig(StrictModel):
    """Common to rule and channel entries: the class that implements the entry."""

    target: str = Field(alias="_target_", min_length=1)
    name: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_.\-]+$", description="unique within its list"
    )
    enabled: bool = Field(True, description="false: keep the entry in YAML but skip it")


def _custom(loc: tuple[int | str, ...], message: str, value: Any) -> InitErrorDetails:
    return {
        "type": PydanticCustomError("value_error", "Value error, {msg}", {"msg": message}),
        "loc": loc,
        "input": value,
    }


def validate_entries(entries: Any, base: type[EntryConfig], what: str) -> list[EntryConfig]:
    """Validate each entry with its `_target_`'s own model; every problem is reported."""
    from atb.config.validate import import_target

    if not isinstance(entries, list):
        raise ValueError(f"must be a list of {what} entries, each with a _target_")
    problems: list[InitErrorDetails] = []
    built: list[EntryConfig] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, base):
            built.append(entry)
            continue
        if not isinstance(entry, dict) or not entry.get("_target_"):
            problems.append(_custom((i,), f"a {what} entry needs a _target_", entry))
            continue
        target = str(entry["_target_"])
        try:
            cls = import_target(target)
        except ImportError as exc:
            problems.append(_custom((i, "_target_"), f"cannot import '{target}': {exc}", target))
            continue
        model = getattr(cls, "config_model", None)
        if not (isinstance(model, type) and issubclass(model, base)):
            problems.append(
                _custom(
                    (i, "_target_"),
                    f"'{target}' is not an alert {what} (no {base.__name__} config_model)",
                    target,
                )
            )
            continue
        try:
            built.append(model.model_validate(entry))
        except ValidationError as exc:
            problems += [_prefixed(i, err) for err in exc.errors(include_url=False)]
    if problems:
        raise ValidationError.from_exception_data(f"alerts {what}s", problems)
    return built


def _prefixed(index: int, err: Any) -> InitErrorDetails:
    detail: InitErrorDetails = {
        "type": err["type"],
        "loc": (index, *err["loc"]),
        "input": err.get("input"),
    }
    if err.get("ctx"):
        detail["ctx"] = err["ctx"]
    return detail


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
    rules: list[Any] = Field(default_factory=list)
    channels: list[Any] = Field(default_factory=list)

    @field_validator("rules", mode="before")
    @classmethod
    def _rules(cls, value: Any) -> list[EntryConfig]:
        from atb.alerts.rules import RuleConfig

        return validate_entries(value, RuleConfig, "rule")

    @field_validator("channels", mode="before")
    @classmethod
    def _channels(cls, value: Any) -> list[EntryConfig]:
        from atb.alerts.channels import ChannelConfig

        return validate_entries(value, ChannelConfig, "channel")

    @model_validator(mode="after")
    def _unique_names(self) -> AlertsConfig:
        from atb.alerts.channels import channel_name
        from atb.alerts.rules import rule_name

        for what, entries, namer in (
            ("rules", self.rules, rule_name),
            ("channels", self.channels, channel_name),
        ):
            seen: dict[str, int] = {}
            for i, entry in enumerate(entries):
                name = namer(entry)
                if name in seen:
                    raise field_error(
                        f"{what}.{i}.name",
                        f"duplicate name '{name}' (also {what}.{seen[name]}); set a unique name",
                    )
                seen[name] = i
        return self
