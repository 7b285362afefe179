"""The `dashboards` run-graph node: serve dashboards beside the engine, on their own port.

`python -m atb mode=paper exchange=replay dashboards=monitoring` adds this node; it starts
after `db` (so the schema exists), serves until the run ends and stops before `db` closes.
`apps` is a list, so one server can host several dashboards (`dashboards=all`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loguru import logger
from pydantic import Field, field_validator

from atb.config.base import NodeConfig
from atb.dashboards.auth import EXPOSURE_HINT, auth_from_env
from atb.dashboards.bind import NODE_PORT_ENV, resolve_bind
from atb.db.url import DEFAULT_URL
from atb.runtime.context import RunContext
from atb.runtime.exposure import check_exposure
from atb.runtime.node import Node


class DashboardConfig(NodeConfig):
    apps: list[str] = Field(
        default_factory=lambda: ["monitoring"], min_length=1, description="dashboards to serve"
    )
    host: str = Field(
        "auto",
        min_length=1,
        description="auto: HOST, else 0.0.0.0 on a platform (ENV=production, RAILWAY_*, "
        "KUBERNETES_SERVICE_HOST), else 127.0.0.1",
    )
    port: int = Field(
        5006, ge=0, le=65535, description="HTTP port (ATB_DASHBOARD_PORT wins); 0: a free one"
    )
    allow_unauthenticated: bool = Field(
        False, description="serve beyond loopback without the ATB_DASHBOARD_PASSWORD login"
    )
    db_url: str = Field(DEFAULT_URL, min_length=1, description="database to read (read-only)")
    update_interval: float = Field(5.0, gt=0, description="seconds between periodic updates")
    logs_dir: Path | None = Field(None, description="directory of CSV trade exports")

    @field_validator("apps")
    @classmethod
    def _known_apps(cls, apps: list[str]) -> list[str]:
        from atb.dashboards.discovery import discover

        # Metadata only (no imports): a typo fails validation before anything starts.
        known = {info.name for info in discover()}
        unknown = [a for a in apps if a not in known]
        if unknown:
            raise ValueError(f"unknown dashboards {unknown} (available: {sorted(known)})")
        if len(set(apps)) != len(apps):
            raise ValueError("a dashboard is listed twice")
        return apps


class DashboardNode(Node[DashboardConfig]):
    def __init__(self, config: NodeConfig, ctx: RunContext, db: Any = None, **needs: Any) -> None:
        # `db` is only an ordering edge: the dashboards open their own read-only engine.
        super().__init__(config, ctx)
        self.server: Any = None

    def start(self) -> None:
        from atb.dashboards.discovery import app_factory, find
        from atb.dashboards.server import DashboardServer
        from atb.dashboards.settings import DashboardSettings

        apps: dict[str, Any] = {}
        for name in self.config.apps:
            info = find(name)
            factory = app_factory(info)
            values: dict[str, Any] = {
                "db_url": self.config.db_url,
                "update_interval": self.config.update_interval,
                "logs_dir": self.config.logs_dir,
            }
            settings = DashboardSettings.model_validate(
                {k: v for k, v in values.items() if info.supports(k)}
            )
            apps[name] = _bind(factory, settings)
        bind = resolve_bind(self.config.host, self.config.port, NODE_PORT_ENV, "dashboards.port")
        auth = auth_from_env()
        check_exposure(
            "dashboards",
            bind.host,
            authenticated=auth is not None,
            allow_unauthenticated=self.config.allow_unauthenticated,
            how=EXPOSURE_HINT,
            override="set dashboards.allow_unauthenticated=true",
        )
        from atb.api.handlers import database_routes

        # The read-only JSON API beside the pages, over the same database and login.
        basic = None if auth is None else (auth.user, auth.password)
        api = database_routes(self.config.db_url, basic)
        self.server = DashboardServer(
            apps, host=bind.host, port=bind.port, auth=auth, extra_routes=api
        )
        self.server.start()
        logger.info(
            "dashboards listening on {}:{} ({}; login {})",
            bind.host,
            self.server.port,
            bind.sources,
            "required" if auth else "off",
        )
        for name in apps:
            logger.info("dashboard {} at {}", name, self.server.app_url(name))

    @property
    def urls(self) -> dict[str, str]:
        return {} if self.server is None else {n: self.server.app_url(n) for n in self.config.apps}

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def _bind(factory: Any, settings: Any) -> Any:
    def page() -> Any:
        return factory(settings)

    return page
