"""The `health` node: /health, /status, /livez, /readyz and /metrics over HTTP.

The server runs on its own thread with its own asyncio/tornado IOLoop, so a busy engine or
a slow check never blocks it: handlers only read lock-free snapshots (`self.ctx.probes.heartbeat`),
and anything that may block (database, exchange, state providers, metric rendering) runs
on worker threads with a timeout (see `atb.health.cache`).

Port: `PORT`, else `HEALTH_CHECK_PORT`, else `health.port` (seed compatibility: the
environment wins). The socket is bound in `start()`, on the runner's thread, so a port in
use stops the run with a clear error before anything trades (exit 1) — never a run without
health. Host `auto` (the default): `HOST`, else all interfaces on a platform (ENV=production,
RAILWAY_*, KUBERNETES_SERVICE_HOST), else 127.0.0.1 (`atb.runtime.exposure`).

Auth: /health, /livez and /readyz are always open (probes carry no credentials); every other
route needs `Authorization: Bearer $ATB_API_TOKEN` once the token is set, and a server
reachable beyond loopback refuses to start without it unless `allow_unauthenticated=true`.

Inputs: the `db` node comes through `needs` (so it is started first); everything else is
handed in the run context (`ctx.exchange`, `ctx.probes`), so the health server never
needs the exchange/journal/alerts nodes and never forces them into the run graph.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import json
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.web
from loguru import logger
from pydantic import Field

from atb.config.base import NodeConfig
from atb.config.targets import TargetList, import_target, validate_targets
from atb.health import metrics
from atb.health.cache import CheckCache, CheckResult
from atb.health.checks import (
    DEFAULT_CHECKS,
    SEVERITY,
    Check,
    CheckConfig,
    CheckEnv,
    server_env,
    worst,
)
from atb.health.limits import LimitedHTTPServer
from atb.logging.redaction import redact_obj
from atb.runtime import exposure, tuning
from atb.runtime.context import RunContext
from atb.runtime.liveness import judge_snapshot
from atb.runtime.node import Node
from atb.runtime.probes import silence_limit

# Without a configured max_silence and before the loop announces its interval.
FALLBACK_INTERVAL = 60.0

ENDPOINT_CODES: dict[str, dict[str, int]] = {
    # Kubernetes conventions: /livez fails only when a restart would help (the loop is
    # dead or hung), /readyz only passes while the loop trades; /health answers "is it
    # trading?" for uptime monitors (the seed's contract); /status adds the components.
    "/livez": {"starting": 200, "running": 200, "degraded": 200, "stopping": 200,
               "stalled": 503, "not_started": 503, "stopped": 503},
    "/health": {"starting": 200, "running": 200, "degraded": 503, "stopping": 503,
                "stalled": 503, "not_started": 503, "stopped": 503},
    "/readyz": {"starting": 503, "running": 200, "degraded": 503, "stopping": 503,
                "stalled": 503, "not_started": 503, "stopped": 503},
}  # fmt: skip
"""HTTP code per loop state (README "Loop states and endpoints"); /status follows LOOP_STATUS."""

LOOP_STATUS: dict[str, str] = {
    "starting": "healthy", "running": "healthy", "degraded": "degraded",
    "stopping": "unhealthy", "stalled": "unhealthy", "not_started": "unhealthy",
    "stopped": "unhealthy",
}  # fmt: skip
"""What each loop state contributes to the /status verdict."""


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
        description="sys.setswitchinterval while serving (null: leave Python's 5 ms)",
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


def iso_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=str, separators=(",", ":")).encode()


class HealthServer(Node[HealthServerConfig]):
    def __init__(self, config: NodeConfig, ctx: RunContext, **nodes: Any) -> None:
        super().__init__(config, ctx)
        self.nodes = nodes
        self.env = CheckEnv(ctx=ctx, nodes=nodes, server_env=server_env())
        self.checks: list[Check] = []
        for entry in self.config.checks:
            if not entry.enabled:
                continue
            cls = import_target(entry.target)
            self.checks.append(cls(entry, self.env))
        names = [c.name for c in self.checks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"health.checks: duplicate component names {duplicates}")
        self.port: int | None = None
        self.port_source = "config:health.port"
        self.host = "127.0.0.1"
        self.host_source = "self.config"
        self.token: str | None = None
        self.started_wall = time.time()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._aux_executor: ThreadPoolExecutor | None = None
        self.cache: CheckCache | None = None
        self._error: BaseException | None = None
        self._restore_switch_interval: Callable[[], None] = lambda: None
        self.http: LimitedHTTPServer | None = None

    # -- lifecycle --------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{exposure.display_host(self.host)}:{self.port}"

    def start(self) -> None:
        port, self.port_source = resolve_port(self.config.port)
        self.host, self.host_source = exposure.resolve_host(self.config.host)
        self.token = os.environ.get(self.config.token_env, "").strip() or None
        if self.token is not None:
            _register_secret(self.token)
        exposure.check_exposure(
            "health server",
            self.host,
            authenticated=self.token is not None,
            allow_unauthenticated=self.config.allow_unauthenticated,
            how=f"set {self.config.token_env} (bearer token for /status and /metrics)",
            override="set health.allow_unauthenticated=true",
        )
        try:
            sockets = tornado.netutil.bind_sockets(
                port, self.host, family=socket.AF_UNSPEC, backlog=1024
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise HealthPortInUse(
                    f"health server: port {port} on {self.host} is already in use "
                    f"(from {self.port_source}); stop the other process or pick another port "
                    "with PORT, HEALTH_CHECK_PORT or health.port"
                ) from None
            raise HealthPortInUse(
                f"health server: cannot listen on {self.host}:{port}: {exc.strerror or exc}"
            ) from None
        self.port = sockets[0].getsockname()[1]
        for check in self.checks:
            try:
                check.prepare()
            except Exception as exc:  # run() reports it in /status; start-up goes on
                logger.warning("health check {} could not prepare: {}", check.name, exc)
        metrics.set_run_labels(
            mode=self.ctx.mode,
            strategy=self.ctx.strategy or "none",
            symbol=self.ctx.symbol,
            run_id=self.ctx.run_id,
        )
        self.started_wall = time.time()
        # the probe latency a CPU-bound engine thread can impose (atb.runtime.tuning)
        self._restore_switch_interval = tuning.shorter_switch_interval(
            self.config.gil_switch_interval
        )
        # One worker per check: single flight means no more can ever be busy at once.
        self._executor = ThreadPoolExecutor(
            max_workers=max(1, len(self.checks)), thread_name_prefix="atb-health-check"
        )
        # Metrics rendering and provider reads get their own worker, so hung checks
        # cannot starve /metrics.
        self._aux_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="atb-health-aux")
        self.cache = CheckCache(
            self.checks,
            self._executor,
            self.config.check_timeout,
            self.config.cache_ttl,
            self.ctx.secrets,
        )
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._serve_thread, args=(sockets, ready), name="atb-health", daemon=True
        )
        self._thread.start()
        if not ready.wait(10) or self._error is not None:
            for sock in sockets:
                sock.close()
            raise RuntimeError(f"health server failed to start: {self._error}")
        logger.info(
            "health server listening on {}:{} (host from {}, port from {}; {}): "
            "/health /livez /readyz open, /status /metrics {}",
            self.host,
            self.port,
            self.host_source,
            self.port_source,
            self.url,
            "need the bearer token" if self.token else "unauthenticated",
        )

    def authorized(self, header: str | None) -> bool:
        """No token configured: open (start() already refused that beyond loopback)."""
        if self.token is None:
            return True
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), self.token.encode())

    def _serve_thread(self, sockets: list[socket.socket], ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(sockets, ready))
        except BaseException as exc:
            self._error = exc
            ready.set()

    async def _serve(self, sockets: list[socket.socket], ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = make_app(self)
        http = LimitedHTTPServer(
            app,
            max_connections=self.config.max_connections,
            header_timeout=self.config.header_timeout,
            max_header_size=self.config.max_header_bytes,
            # GET/HEAD carry no body: anything beyond a token amount is refused unread.
            max_body_size=1024,
            idle_connection_timeout=self.config.idle_timeout,
            body_timeout=5,
        )
        http.add_sockets(sockets)
        self.http = http
        ready.set()
        refresher = (
            asyncio.create_task(self._refresh_forever(self.config.refresh_interval))
            if self.config.refresh_interval
            else None
        )
        await self._stopping.wait()
        if refresher is not None:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
        http.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(http.close_all_connections(), 2)

    def stop(self) -> None:
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None and thread is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(stopping.set)
            thread.join(5)
        self._thread = None
        self._loop = None
        for executor in (self._executor, self._aux_executor):
            if executor is not None:
                # A hung check must not hold shutdown: its daemon worker is abandoned.
                executor.shutdown(wait=False, cancel_futures=True)
        if self.cache is not None:
            self.cache.close()
        self._restore_switch_interval()
        self._restore_switch_interval = lambda: None

    # -- evaluation (IOLoop thread) ---------------------------------------------------------

    def loop_state(self) -> tuple[bool, dict[str, Any]]:
        """(alive, payload): the trading loop's state from its heartbeat alone."""
        hb = self.ctx.probes.heartbeat
        snap = hb.snapshot()
        since = hb.started_at if hb.started_at is not None else self.started_wall
        waited = max(0.0, time.time() - since)
        max_silence = self.config.max_silence
        if max_silence is None and not hb.interval:
            max_silence = silence_limit(FALLBACK_INTERVAL)
        verdict = judge_snapshot(
            snap,
            waited=waited,
            stopping=self.ctx.stopping,
            startup_grace=self.config.startup_grace,
            max_silence=max_silence,
        )
        loop: dict[str, Any] = {
            "state": verdict.state,
            "heartbeat_age_seconds": snap["heartbeat_age_seconds"],
            "pulse_age_seconds": snap["pulse_age_seconds"],
            "max_silence_seconds": verdict.limit,
            "iterations": snap["iterations"],
            "started_at": snap["started_at"],
            "last_beat_at": snap["last_beat_at"],
            "interval_seconds": snap["interval_seconds"],
        }
        if snap["failures"]:
            loop["failures"] = snap["failures"]
            loop["last_error"] = redact_obj(snap["last_error"], self.ctx.secrets)
        if snap["stopped_at"] is not None:
            loop["stopped_at"] = snap["stopped_at"]
        if verdict.pulse_age is None and verdict.state in ("starting", "not_started"):
            loop["waiting_seconds"] = round(waited, 3)
        if verdict.reason:
            loop["reason"] = redact_obj(verdict.reason, self.ctx.secrets)
        if snap.get("info"):
            loop["info"] = redact_obj(snap["info"], self.ctx.secrets)
        return verdict.alive, loop

    def health_payload(self) -> tuple[int, dict[str, Any]]:
        _, loop = self.loop_state()
        code = ENDPOINT_CODES["/health"][loop["state"]]
        status = "healthy" if code == 200 else LOOP_STATUS.get(loop["state"], "unhealthy")
        payload: dict[str, Any] = {
            "status": status,
            "timestamp": iso_now(),
            "service": self.config.service,
        }
        if code != 200:
            payload["reason"] = loop.get("reason")
        payload["loop"] = loop
        return code, payload

    async def status_payload(self) -> tuple[int, dict[str, Any]]:
        t0 = time.perf_counter()
        _, loop = self.loop_state()
        assert self.cache is not None
        results = await self.cache.results()
        components: dict[str, Any] = {name: r.payload() for name, r in results.items()}
        statuses = [r.status for r in results.values()]
        reasons = [
            f"{name}: {r.status}" for name, r in results.items() if SEVERITY.get(r.status, 2) > 0
        ]
        loop_status = LOOP_STATUS.get(loop["state"], "unhealthy")
        if loop_status != "healthy":
            statuses.append(loop_status)
            reasons.insert(0, f"loop: {loop.get('reason')}")
        overall = worst(statuses)
        payload: dict[str, Any] = {
            "status": overall,
            "timestamp": iso_now(),
            "service": self.config.service,
            "run": {
                "run_id": self.ctx.run_id,
                "mode": self.ctx.mode,
                "strategy": self.ctx.strategy,
                "symbol": self.ctx.symbol,
                "timeframe": self.ctx.timeframe,
                "uptime_seconds": round(time.time() - self.started_wall, 3),
            },
            "loop": loop,
            "components": components,
        }
        if reasons:
            payload["reasons"] = reasons
        payload["elapsed_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        payload = redact_payload(payload, self.ctx.secrets)
        code = {"healthy": 200, "degraded": self.config.degraded_status_code}.get(overall, 503)
        return code, payload

    async def ready_payload(self) -> tuple[int, dict[str, Any]]:
        assert self.cache is not None
        results = await self.cache.results()
        failing = [name for name, r in results.items() if r.readiness and r.status == "unhealthy"]
        reasons = [f"{name}: {_short(r)}" for name, r in results.items() if name in failing]
        _, loop = self.loop_state()
        if ENDPOINT_CODES["/readyz"][loop["state"]] != 200:
            reasons.insert(0, f"loop: {loop.get('reason') or loop['state']}")
        ready = not reasons
        payload: dict[str, Any] = {
            "status": "ready" if ready else "not_ready",
            "timestamp": iso_now(),
            "service": self.config.service,
            "checks": {name: r.status for name, r in results.items()},
        }
        if reasons:
            payload["reasons"] = reasons
        return (200 if ready else 503), redact_payload(payload, self.ctx.secrets)

    async def _refresh_forever(self, interval: float) -> None:
        """Run the checks (through the cache: single flight, timeouts) and the scrape-time
        gauges on a timer, so a Prometheus that only scrapes /metrics sees current values."""
        assert self.cache is not None
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.cache.results()
                await loop.run_in_executor(self._aux_executor, self.refresh_gauges)
            except asyncio.CancelledError:
                raise
            except Exception:  # the next round tries again; probes are unaffected
                logger.opt(exception=True).debug("health: background refresh failed")
            await asyncio.sleep(interval)

    def render_metrics(self) -> bytes:
        """Worker thread: refresh scrape-time gauges, then render the registry."""
        self.refresh_gauges()
        return metrics.render()

    def refresh_gauges(self) -> None:
        alive, loop = self.loop_state()
        metrics.set_heartbeat_age(self.ctx.probes.heartbeat.age(), loop["max_silence_seconds"])
        metrics.set_loop_state(loop["state"], alive)
        try:
            state = self.ctx.probes.read("journal")
        except Exception:  # a broken provider must not break the scrape
            state = None
        if isinstance(state, dict):
            metrics.set_journal(
                queue_depth=_int_or_none(state.get("queue_depth")),
                spilled=_int_or_none(state.get("spilled")),
                written=_int_or_none(state.get("written")),
            )


def _register_secret(value: str) -> None:
    """The token must never be printed, whatever the run's redaction config lists."""
    from atb.logging.redaction import get_redactor

    get_redactor().add_secrets([value])


def _short(result: CheckResult) -> str:
    d = result.details
    return str(d.get("error") or d.get("reason") or d.get("detail") or result.status)


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def redact_payload(payload: dict[str, Any], secrets: frozenset[str]) -> dict[str, Any]:
    """Known secret values and key names, then the logging redactor's rules if installed."""
    out: dict[str, Any] = redact_obj(payload, secrets)
    from atb.logging.redaction import get_redactor

    try:
        redacted = get_redactor().redact(out)
    except Exception:  # the basic pass above already ran; never fail a probe on this
        return out
    return redacted if isinstance(redacted, dict) else out


# -- HTTP -----------------------------------------------------------------------------------


class _Base(tornado.web.RequestHandler):
    SUPPORTED_METHODS = ("GET", "HEAD")
    server: HealthServer
    # Probes (/health /livez /readyz) stay open: kubelets and load balancers send no token.
    protected = True

    def initialize(self, server: HealthServer) -> None:
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
        logger.opt(exception=(typ, value, tb)).error("health: {} failed", self.request.path)

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
        alive, loop = self.server.loop_state()
        payload: dict[str, Any] = {"status": "alive" if alive else "dead", "timestamp": iso_now()}
        if not alive:
            payload["reason"] = loop.get("reason")
        payload["loop"] = {k: loop.get(k) for k in ("state", "heartbeat_age_seconds")}
        self.send_json(ENDPOINT_CODES["/livez"][loop["state"]], payload)


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

        executor = self.server._aux_executor
        loop = asyncio.get_running_loop()
        try:
            body = await asyncio.wait_for(
                loop.run_in_executor(executor, self.server.render_metrics),
                self.server.config.check_timeout,
            )
        except TimeoutError:
            self.send_json(503, {"status": "error", "code": 503, "error": "metrics timed out"})
            return
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(body)


class IndexHandler(_Base):
    async def get(self, *args: Any) -> None:
        self.send_json(
            200,
            {
                "service": self.server.config.service,
                "endpoints": ["/health", "/status", "/livez", "/readyz", "/metrics"],
            },
        )


class NotFoundHandler(_Base):
    protected = False  # a 404 tells nothing; a 401 would hide typos in probe paths

    async def get(self, *args: Any) -> None:
        self.send_json(404, {"status": "error", "code": 404, "error": "not found"})


def make_app(server: HealthServer) -> tornado.web.Application:
    args = {"server": server}
    return tornado.web.Application(
        [
            (r"/", IndexHandler, args),
            (r"/health/?", HealthHandler, args),
            (r"/status/?", StatusHandler, args),
            (r"/livez/?", LivezHandler, args),
            (r"/readyz/?", ReadyzHandler, args),
            (r"/metrics/?", MetricsHandler, args),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        # Access logs for probes polling every second would drown the run's logs.
        log_function=lambda _handler: None,
        compress_response=False,
    )
