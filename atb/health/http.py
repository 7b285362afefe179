"""The health server's HTTP routes (tornado), served in the server process.

/health, /livez and /readyz are always open (probes carry no credentials); every other
route, /api/* included, needs `Authorization: Bearer $ATB_API_TOKEN` once the token is set.
"""

from __future__ import annotations

import asyncio
from typing import Any

import tornado.web

from atb.api.handlers import ENDPOINTS, ApiSource, api_routes
from atb.health.service import HealthService, dumps


class _Base(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD")
    server: HealthService
    # Probes (/health /livez /readyz) stay open: kubelets and load balancers send no token.
    protected = True

    def initialize(self, server: HealthService) -> None:
        self.server = server

    def prepare(self) -> None:
        if self.protected and not self.server.authorized(self.request.headers.get("Authorization")):
            self.set_header("WWW-Authenticate", 'Bearer realm="atb"')
            self.send_json(401, {"status": "error", "code": 401, "error": "unauthorized"})

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.clear_header("Server")

    def compute_etag(self) -> str | None:
        return None  # probes must always see the current state, not a 304

    def send_json(self, code: int, payload: dict[str, Any]) -> None:
        self.set_status(code)
        self.finish(dumps(payload))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(dumps({"status": "error", "code": status_code, "error": self._reason.lower()}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, tornado.web.HTTPError):
            return  # 404/405 are answers, not server faults
        self.server.link_log(
            "error", f"health: {self.request.path} failed: {typ.__name__}: {value}"
        )

    async def head(self, *args: Any) -> None:
        # Subclasses define get(); tornado's own get() answers 405 for a handler without one.
        await self.get(*args)  # type: ignore[misc]


class HealthHandler(_Base):
    protected = False

    async def get(self, *args: Any) -> None:
        self.send_json(*self.server.health_payload())


class LivezHandler(_Base):
    protected = False

    async def get(self, *args: Any) -> None:
        self.send_json(*self.server.livez_payload())


class StatusHandler(_Base):
    async def get(self, *args: Any) -> None:
        self.send_json(*await self.server.status_payload())


class ReadyzHandler(_Base):
    protected = False

    async def get(self, *args: Any) -> None:
        self.send_json(*await self.server.ready_payload())


class MetricsHandler(_Base):
    async def get(self, *args: Any) -> None:
        from prometheus_client import CONTENT_TYPE_LATEST

        try:
            body = await asyncio.wait_for(
                self.server.metrics_page(), self.server.config.check_timeout
            )
        except TimeoutError:
            self.send_json(503, {"status": "error", "code": 503, "error": "metrics timed out"})
            return
        except ConnectionError:
            self.send_json(503, {"status": "error", "code": 503, "error": "trading process gone"})
            return
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(body)


class IndexHandler(_Base):
    async def get(self, *args: Any) -> None:
        self.send_json(
            200,
            {
                "service": self.server.config.service,
                "endpoints": ["/health", "/status", "/livez", "/readyz", "/metrics", *ENDPOINTS],
            },
        )


class NotFoundHandler(_Base):
    protected = False  # a 404 tells nothing; a 401 would hide typos in probe paths

    async def get(self, *args: Any) -> None:
        self.send_json(404, {"status": "error", "code": 404, "error": "not found"})


class NoApiHandler(_Base):
    async def get(self, *args: Any) -> None:
        message = "this run has no database: the JSON API reads the run's records"
        self.send_json(503, {"status": "error", "code": 503, "error": message})


def make_app(server: HealthService, api: ApiSource | None) -> tornado.web.Application:
    args = {"server": server}
    return tornado.web.Application(
        [
            (r"/", IndexHandler, args),
            (r"/health/?", HealthHandler, args),
            (r"/status/?", StatusHandler, args),
            (r"/livez/?", LivezHandler, args),
            (r"/readyz/?", ReadyzHandler, args),
            (r"/metrics/?", MetricsHandler, args),
            *(api_routes(api) if api is not None else [(r"/api/.*", NoApiHandler, args)]),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        # Access logs for probes polling every second would drown the run's logs.
        log_function=lambda _handler: None,
        compress_response=False,
    )
