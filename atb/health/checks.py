"""The `/status` components: one class per check, each a `health.checks` entry in YAML.

Every class a `_target_` may name lives here (the probe-backed ones are defined in
`atb.health.probe_checks`, the base in `atb.health.check_base`). All run in the health
server process:
- `config`: which configuration providers contributed to the run (names only);
- `database`: the run's database URL, on the check's own NullPool engine, so a probe never
  takes a connection from the run's pool;
- `exchange`: the run's exchange as handed in `ctx.exchange` (`id`, `sandbox`, `base_url`),
  on a separate, keyless ccxt client; the trading client is never touched.
  The live loop's own view (provider "exchange") is shown alongside;
- `journal`, `data`, `alerts`: the state providers those components register.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from typing import Any, Literal

from pydantic import Field

from atb.exchange.urls import rebase_api_urls
from atb.health.check_base import (
    SEVERITY,
    Check,
    CheckConfig,
    CheckEnv,
    FailureStatus,
    Status,
    worst,
)
from atb.health.probe_checks import (
    NORMAL_STATUS,
    AlertsCheck,
    DataCheck,
    JournalCheck,
    ProbeCheck,
    candle_age,
    timeframe_seconds,
)
from atb.runtime.context import ExchangeTarget

__all__ = [
    "NORMAL_STATUS", "SEVERITY", "AlertsCheck", "Check", "CheckConfig", "CheckEnv",
    "ConfigCheck", "DataCheck", "DatabaseCheck", "ExchangeCheck", "FailureStatus",
    "JournalCheck", "ProbeCheck", "Status", "candle_age", "server_env", "timeframe_seconds",
    "worst",
]  # fmt: skip


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
        if self._engine is not None or not self.env.db_url:
            return self._engine
        from sqlalchemy import create_engine, make_url
        from sqlalchemy.pool import NullPool

        url = make_url(self.env.db_url)
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql":
            # libpq's own timeout (whole seconds, at least 2) bounds a hung connect, so the
            # worker thread is released soon after the cache has reported the timeout.
            timeout = self.config.timeout or 3.0
            connect_args["connect_timeout"] = max(2, math.ceil(timeout))
            connect_args["application_name"] = "atb-health"
        # NullPool: one short connection per run of the check, never one held open.
        self._engine = create_engine(url, poolclass=NullPool, connect_args=connect_args)
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
        if self._engine is not None:
            self._engine.dispose()
        self._engine = None


# -- exchange ---------------------------------------------------------------------------------


class ExchangeCheckConfig(CheckConfig):
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
            rebase_api_urls(client, base_url)
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
