"""The `/status` components: one class per check, each a `health.checks` entry in YAML.

A check is built once per run as `cls(config, env)` and its `run()` is called on a worker
thread (never on the server's IOLoop), at most once per TTL, with a timeout enforced by
`atb.health.cache.CheckCache`. `run()` returns the component's payload with a `status`
(`healthy` / `degraded` / `unhealthy` / `skipped`); raising reports the check's
`failure_status` with the error class and a redacted message.

Where the checks get their inputs (kept to what exists when the health node is built):
- `database`: the `db` node handed to the server through `needs` (its `.engine`/`.url`); the
  check opens its own NullPool engine so a probe never takes a connection from the run's pool.
- `exchange`: the run's exchange as handed in `ctx.exchange` (`id`, `sandbox`, `base_url`),
  used to build a separate, keyless ccxt client; the trading client is never touched.
  The live loop's own view (`ctx.probes` "exchange") is shown alongside.
- `journal`, `data`, `alerts`: the state providers those components register in `ctx.probes`.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from atb.config.base import StrictModel
from atb.runtime.context import ExchangeTarget, RunContext
from atb.runtime.probes import Probes

Status = Literal["healthy", "degraded", "unhealthy", "skipped"]
FailureStatus = Literal["degraded", "unhealthy"]
SEVERITY: dict[str, int] = {"healthy": 0, "skipped": 0, "degraded": 1, "unhealthy": 2}

TIMEFRAME_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 2592000}


def worst(statuses: list[str]) -> str:
    """Overall status: the most severe of the parts (`skipped` counts as healthy)."""
    level = max((SEVERITY.get(s, 2) for s in statuses), default=0)
    return {0: "healthy", 1: "degraded", 2: "unhealthy"}[level]


def timeframe_seconds(timeframe: str) -> float | None:
    try:
        return float(int(timeframe[:-1]) * TIMEFRAME_SECONDS[timeframe[-1]])
    except (KeyError, ValueError, IndexError):
        return None


@dataclass
class CheckEnv:
    """What a check can read: the run, the nodes the server was given, the probes."""

    ctx: RunContext
    nodes: dict[str, Any] = field(default_factory=dict)
    server_env: dict[str, str] = field(default_factory=dict)

    @property
    def probes(self) -> Probes:
        return self.ctx.probes


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
        """Called once at server start, on the runner's thread: pay imports and client
        construction up front so the first /status is not timed out by them."""

    @abstractmethod
    def run(self) -> dict[str, Any]:
        """Each subclass implements this."""

    def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release what run() opened (engines, clients)."""


# -- config -----------------------------------------------------------------------------------

PROVIDER_NAMES = {
    "defaults": "defaults",
    "config_files": "config files",
    "env_vars": "env vars",
    "command_line": "command-line overrides",
}


class ConfigCheck(Check):
    """Which configuration providers contributed to this run (names only, never values)."""

    default_name = "config"

    def run(self) -> dict[str, Any]:
        sources = {k: list(v) for k, v in self.env.ctx.config_sources.items()}
        env_vars = sources.setdefault("env_vars", [])
        for name in self.env.server_env:  # PORT / HEALTH_CHECK_PORT, read by the server itself
            if name not in env_vars:
                env_vars.append(name)
        contributed = [PROVIDER_NAMES.get(k, k) for k, v in sources.items() if v]
        return {"status": "healthy", "contributors": contributed, "providers": sources}


# -- database ---------------------------------------------------------------------------------


class DatabaseCheckConfig(CheckConfig):
    target: str = Field("atb.health.checks.DatabaseCheck", alias="_target_", min_length=1)
    query: str = Field("SELECT 1", min_length=1, description="round-trip statement")
    slow_ms: float = Field(1000.0, gt=0, description="degraded when the round trip is slower")


class DatabaseCheck(Check):
    """Connectivity and round-trip latency of the run's database.

    Default failure status is `degraded`: with the database down the journal spills to
    local disk and trading goes on (see DESIGN: a dead sink degrades health, never trading).
    """

    config_model = DatabaseCheckConfig
    default_name = "database"
    config: DatabaseCheckConfig

    def __init__(self, config: CheckConfig, env: CheckEnv) -> None:
        super().__init__(config, env)
        self._engine: Any = None

    def _get_engine(self) -> Any:
        if self._engine is not None:
            return self._engine
        db = self.env.nodes.get("db")
        engine = getattr(db, "engine", None)
        if engine is None:
            return None
        if engine.dialect.name == "sqlite":
            # A local file: no network, no pool to protect; the run's engine is fine.
            self._engine = engine
            return engine
        from sqlalchemy import create_engine
        from sqlalchemy.pool import NullPool

        connect_args: dict[str, Any] = {}
        if engine.dialect.name == "postgresql":
            # libpq's own timeout (whole seconds, at least 2) bounds a hung connect, so the
            # worker thread is released soon after the cache has reported the timeout.
            timeout = self.config.timeout or 3.0
            connect_args["connect_timeout"] = max(2, math.ceil(timeout))
            connect_args["application_name"] = "atb-health"
        self._engine = create_engine(engine.url, poolclass=NullPool, connect_args=connect_args)
        return self._engine

    def prepare(self) -> None:
        self._get_engine()

    def run(self) -> dict[str, Any]:
        engine = self._get_engine()
        if engine is None:
            return {"status": "skipped", "detail": "no db node in the run graph"}
        info = {
            "dialect": engine.dialect.name,
            "url": engine.url.render_as_string(hide_password=True),
        }
        t0 = time.perf_counter()
        with engine.connect() as conn:
            conn.exec_driver_sql(self.config.query)
        latency = (time.perf_counter() - t0) * 1000
        status = "healthy" if latency <= self.config.slow_ms else "degraded"
        return {"status": status, "connected": True, "latency_ms": round(latency, 2), **info}

    def failure_details(self) -> dict[str, Any]:
        return {"connected": False}

    def close(self) -> None:
        db_engine = getattr(self.env.nodes.get("db"), "engine", None)
        if self._engine is not None and self._engine is not db_engine:
            self._engine.dispose()
        self._engine = None


# -- exchange ---------------------------------------------------------------------------------


class ExchangeCheckConfig(CheckConfig):
    target: str = Field("atb.health.checks.ExchangeCheck", alias="_target_", min_length=1)
    exchange_id: str | None = Field(None, description="ccxt id; null: the run's exchange.id")
    base_url: str | None = Field(
        None, description="rebase the REST API here; null: the run's exchange.base_url, if any"
    )
    sandbox: bool | None = Field(None, description="null: the run's exchange.sandbox")
    method: Literal["fetch_time", "ping"] = Field(
        "fetch_time", description="fetch_time (public server time) or ping (/api/v3/ping)"
    )
    slow_ms: float = Field(2000.0, gt=0, description="degraded when the round trip is slower")


class ExchangeCheck(Check):
    """Reachability and latency of the configured ccxt exchange, on its own keyless client."""

    config_model = ExchangeCheckConfig
    default_name = "exchange"
    default_failure = "unhealthy"
    config: ExchangeCheckConfig

    def __init__(self, config: CheckConfig, env: CheckEnv) -> None:
        super().__init__(config, env)
        self._client: Any = None

    def target(self) -> tuple[str | None, str | None, bool]:
        run = self.env.ctx.exchange or ExchangeTarget(target="")
        ex_id = self.config.exchange_id or run.id
        base_url = self.config.base_url or run.base_url
        sandbox = run.sandbox if self.config.sandbox is None else self.config.sandbox
        return ex_id, base_url, sandbox

    def _get_client(self, ex_id: str, base_url: str | None, sandbox: bool) -> Any:
        if self._client is not None:
            return self._client
        import ccxt

        cls = getattr(ccxt, ex_id, None)
        if cls is None:
            raise ValueError(f"ccxt has no exchange '{ex_id}'")
        timeout_ms = int((self.config.timeout or 3.0) * 1000)
        # No keys: reachability needs public endpoints only, so nothing secret is held here.
        client = cls(
            {
                "timeout": timeout_ms,
                "enableRateLimit": False,  # the cache TTL is the rate limit
                "options": {"adjustForTimeDifference": False},
            }
        )
        if sandbox:
            client.set_sandbox_mode(True)
        if base_url:
            _rebase(client, base_url)
        self._client = client
        return client

    def prepare(self) -> None:
        ex_id, base_url, sandbox = self.target()
        if ex_id:
            self._get_client(ex_id, base_url, sandbox)

    def run(self) -> dict[str, Any]:
        ex_id, base_url, sandbox = self.target()
        loop_view = self.env.probes.read("exchange")
        extra = {"loop_view": loop_view} if loop_view else {}
        if not ex_id:
            detail = "no ccxt exchange in the run graph"
            target = self.env.ctx.exchange.target if self.env.ctx.exchange else None
            if target:
                detail = f"exchange '{target}' is not a ccxt exchange (offline replay)"
            return {"status": "skipped", "detail": detail, **extra}
        client = self._get_client(ex_id, base_url, sandbox)
        info: dict[str, Any] = {"exchange": ex_id, "sandbox": sandbox, "method": self.config.method}
        t0 = time.perf_counter()
        if self.config.method == "ping" and hasattr(client, "publicGetPing"):
            client.publicGetPing()
        else:
            server_ms = client.fetch_time()
            if server_ms:
                info["clock_offset_ms"] = int(server_ms - time.time() * 1000)
        latency = (time.perf_counter() - t0) * 1000
        status = "healthy" if latency <= self.config.slow_ms else "degraded"
        latency_ms = round(latency, 2)
        return {"status": status, "reachable": True, "latency_ms": latency_ms, **info, **extra}

    def failure_details(self) -> dict[str, Any]:
        ex_id = self.target()[0]
        return {"exchange": ex_id, "reachable": False}

    def close(self) -> None:
        client, self._client = self._client, None
        session = getattr(client, "session", None)
        if session is not None:
            # Closing a probe client must never fail shutdown.
            with contextlib.suppress(Exception):
                session.close()


def _rebase(client: Any, base_url: str) -> None:
    """Point every REST family at `base_url`, exactly as the exchange node does."""
    from atb.exchange.urls import rebase_api_urls

    rebase_api_urls(client, base_url)


# -- probe-backed components (journal, data, alerts) --------------------------------------------


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
    target: str = Field("atb.health.checks.JournalCheck", alias="_target_", min_length=1)
    max_queue_depth: int | None = Field(
        None, ge=1, description="degraded above this many queued events (null: no limit)"
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


class DataCheckConfig(ProbeCheckConfig):
    target: str = Field("atb.health.checks.DataCheck", alias="_target_", min_length=1)
    max_candle_age: float | None = Field(
        None, gt=0, description="degraded above this age, seconds (null: 2 × timeframe)"
    )


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


DEFAULT_CHECKS: tuple[str, ...] = (
    "atb.health.checks.ConfigCheck",
    "atb.health.checks.DatabaseCheck",
    "atb.health.checks.ExchangeCheck",
    "atb.health.checks.JournalCheck",
    "atb.health.checks.DataCheck",
    "atb.health.checks.AlertsCheck",
)

SERVER_ENV_VARS = ("PORT", "HEALTH_CHECK_PORT")


def server_env() -> dict[str, str]:
    return {k: os.environ[k] for k in SERVER_ENV_VARS if os.environ.get(k)}
