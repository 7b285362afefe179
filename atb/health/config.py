"""The `health` node's settings (`conf/health/on.yaml`), checked before anything starts.

`checks` entries are validated with the model their `_target_` class declares, so a typo
in a check's settings names the bad key (`health.checks.1.slow: unknown key`).
"""

from __future__ import annotations

from pydantic import Field

from atb.config.base import NodeConfig
from atb.config.targets import TargetList, import_target, validate_targets
from atb.health.checks import DEFAULT_CHECKS, Check, CheckConfig, CheckEnv
from atb.runtime import exposure


class HealthPortInUse(RuntimeError):
    """The health port is taken: the run must not go on without its health server."""


class HealthServerConfig(NodeConfig):
    target: str = Field("atb.health.server.HealthServer", alias="_target_", min_length=1)
    host: str = Field(
        "auto",
        min_length=1,
        description="auto: HOST, else 0.0.0.0 on a platform (ENV=production, RAILWAY_*, "
        "KUBERNETES_SERVICE_HOST), else 127.0.0.1",
    )
    token_env: str = Field(
        "ATB_API_TOKEN", min_length=1, description="env var holding the API bearer token"
    )
    allow_unauthenticated: bool = Field(
        False, description="serve /status and /metrics without a token beyond loopback"
    )
    port: int = Field(8000, ge=0, le=65535, description="PORT / HEALTH_CHECK_PORT override it")
    service: str = Field("atb", min_length=1, description="`service` in every payload")
    max_silence: float | None = Field(
        None, gt=0, description="503 when the loop is silent longer; null: 3 × check interval"
    )
    startup_grace: float = Field(
        120.0, ge=0, description="seconds the loop may take to beat for the first time"
    )
    check_timeout: float = Field(3.0, gt=0, description="default per-check timeout, seconds")
    cache_ttl: float = Field(5.0, ge=0, description="default seconds a check result is reused")
    degraded_status_code: int = Field(
        200, ge=200, le=599, description="HTTP status of /status when degraded"
    )
    max_header_bytes: int = Field(8192, ge=1024, description="larger requests are rejected")
    idle_timeout: float = Field(60.0, gt=0, description="close idle keep-alive connections")
    # Abusive clients (atb/health/limits.py): bounded fds, no slowloris, 431.
    max_connections: int = Field(256, ge=1, description="over it: an immediate 503 and close")
    header_timeout: float = Field(
        10.0, gt=0, description="close a connection whose request head is incomplete this long"
    )
    gil_switch_interval: float | None = Field(
        0.0005,
        gt=0,
        le=0.005,
        description="sys.setswitchinterval in the server process, where the HTTP loop "
        "shares the GIL with check workers (null: leave Python's 5 ms)",
    )
    # The server process (atb/health/server.py): how it learns the trading process's state.
    publish_interval: float = Field(
        0.1, gt=0, le=1.0, description="seconds between state updates sent to the server process"
    )
    publish_timeout: float = Field(
        5.0,
        gt=0,
        description="no update from the trading process for this long: the loop counts as "
        "stalled (the process is stopped, hung or swapping)",
    )
    metrics_ttl: float = Field(
        0.25, ge=0, description="seconds a /metrics page rendered by the trading process is reused"
    )
    max_restarts: int = Field(
        3, ge=0, description="times a dead server process is restarted before the port is closed"
    )
    start_timeout: float = Field(
        60.0, gt=0, description="seconds the server process may take to start serving"
    )
    refresh_interval: float | None = Field(
        10.0,
        gt=0,
        description="seconds between background runs of the checks, so /metrics carries "
        "fresh atb_health_check_status without anyone calling /status (null: off)",
    )
    checks: TargetList[CheckConfig] = Field(
        default_factory=lambda: validate_targets(
            [{"_target_": t} for t in DEFAULT_CHECKS], CheckConfig
        ),
        description="the /status components, each a _target_ with its own settings",
    )


def resolve_port(config_port: int, environ: dict[str, str] | None = None) -> tuple[int, str]:
    """(port, where it came from): PORT, else HEALTH_CHECK_PORT, else the config."""
    return exposure.resolve_port(config_port, ("PORT", "HEALTH_CHECK_PORT"), "health.port", environ)


def build_checks(config: HealthServerConfig, env: CheckEnv) -> list[Check]:
    """The enabled checks, each built once for the run; component names must be unique."""
    checks: list[Check] = []
    for entry in config.checks:
        if entry.enabled:
            checks.append(import_target(entry.target)(entry, env))
    names = [c.name for c in checks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"health.checks: duplicate component names {duplicates}")
    return checks
