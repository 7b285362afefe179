"""What every `/status` check is: its settings, its inputs, its contract.

A check is built once per run as `cls(config, env)` and its `run()` is called on a worker
thread of the health server process (never on its HTTP loop), at most once per TTL, with
a timeout enforced by `atb.health.cache.CheckCache`. `run()` returns the component's
payload with a `status` (`healthy` / `degraded` / `unhealthy` / `skipped`); raising
reports the check's `failure_status` with the error class and a redacted message.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from pydantic import Field

from atb.config.base import StrictModel
from atb.runtime.context import RunContext

Status = Literal["healthy", "degraded", "unhealthy", "skipped"]
FailureStatus = Literal["degraded", "unhealthy"]
SEVERITY: dict[str, int] = {"healthy": 0, "skipped": 0, "degraded": 1, "unhealthy": 2}


def worst(statuses: list[str]) -> str:
    """Overall status: the most severe of the parts (`skipped` counts as healthy)."""
    level = max((SEVERITY.get(s, 2) for s in statuses), default=0)
    return {0: "healthy", 1: "degraded", 2: "unhealthy"}[level]


class ProbeReader(Protocol):
    """A state provider's current reading by name (`Probes.read`, or the same answered by
    the trading process over the health server's channel)."""

    def read(self, name: str) -> dict[str, Any] | None: ...


@dataclass
class CheckEnv:
    """What a check can read: the run, the state providers, the database URL."""

    ctx: RunContext
    probes: ProbeReader
    server_env: dict[str, str] = field(default_factory=dict)
    db_url: str | None = None


class CheckConfig(StrictModel):
    """Settings every check has; `timeout`/`ttl` null follow health.check_timeout/cache_ttl."""

    entry_kind: ClassVar[str] = "a health check"

    target: str = Field(alias="_target_", min_length=1)
    name: str | None = Field(None, description="component key in /status (default per class)")
    enabled: bool = True
    timeout: float | None = Field(None, gt=0, description="seconds before the check is failed")
    ttl: float | None = Field(None, ge=0, description="seconds a result is reused")
    failure_status: FailureStatus | None = Field(
        None, description="status when the check fails (default per class)"
    )
    readiness: bool = Field(True, description="an unhealthy result makes /readyz fail")


class Check(ABC):
    """Base class: subclasses set `default_name`, `config_model` and implement `run()`."""

    config_model: ClassVar[type[CheckConfig]] = CheckConfig
    default_name: ClassVar[str] = "check"
    default_failure: ClassVar[FailureStatus] = "degraded"

    def __init__(self, config: CheckConfig, env: CheckEnv) -> None:
        self.config = config
        self.env = env

    @property
    def name(self) -> str:
        return self.config.name or self.default_name

    @property
    def failure_status(self) -> FailureStatus:
        return self.config.failure_status or self.default_failure

    def prepare(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Called once when the server process starts: pay imports and client
        construction up front so the first /status is not timed out by them."""

    @abstractmethod
    def run(self) -> dict[str, Any]:
        """Each subclass implements this."""

    def failure_details(self) -> dict[str, Any]:
        """Fields added to a failed or timed-out result (e.g. `connected: false`)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release what run() opened (engines, clients)."""
