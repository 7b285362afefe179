"""The `health` node: /health, /livez, /readyz, /status, /metrics and /api/* from a process
of their own.

Why a separate process: every HTTP request costs tornado ~0.8 ms of Python, and in the
trading process that time is taken from the loop under the one GIL (200 keep-alive probes
slowed the loop by up to 21 %). Here the node only binds the port and publishes state; the
server process (atb/health/process.py) answers every request.

How state crosses (atb/health/link.py, one socketpair, length-prefixed JSON):
- every `publish_interval` (0.1 s) the node sends the loop heartbeat's fields (with their
  monotonic stamps, so ages stay exact), whether the run is stopping, and the server
  process's own supervision record: a few hundred bytes, ~20 µs of the trading process;
- the server process asks for what is expensive or rare only when it needs it: a state
  provider's reading (`ctx.probes.read`, at most once per check TTL) and the Prometheus page
  (rendered here from the run's registry, reused for `metrics_ttl`);
- the database and exchange checks and the JSON API open their own connections in the
  server process; nothing of them runs here.

Status never lies: if the trading process dies (even SIGKILL) the channel reads end of file
and the server process exits at once, closing the port; if it freezes, updates stop and
after `publish_timeout` the loop is reported `stalled`. If the server process dies, the
node logs an error, counts it in /status (`server.restarts`) and starts a new one on the
same socket, up to `max_restarts` times; after that it closes the port and logs CRITICAL.

Port: `PORT`, else `HEALTH_CHECK_PORT`, else `health.port`. The socket is bound in
`start()`, on the runner's thread, so a port in use stops the run with a clear error before
anything trades (exit 1). Host `auto`: `HOST`, else all interfaces on a platform
(ENV=production, RAILWAY_*, KUBERNETES_SERVICE_HOST), else 127.0.0.1.

Auth: /health, /livez and /readyz are open; every other route needs
`Authorization: Bearer $ATB_API_TOKEN` once the token is set, and a server reachable beyond
loopback refuses to start without it unless `allow_unauthenticated=true`.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import tornado.netutil
from loguru import logger

from atb.config.base import NodeConfig
from atb.health import metrics
from atb.health.checks import Check, CheckEnv, server_env
from atb.health.config import HealthPortInUse, HealthServerConfig, build_checks, resolve_port
from atb.health.link import Link, LinkClosed
from atb.health.service import heartbeat_fields, redact_payload
from atb.logging.redaction import get_redactor
from atb.runtime import exposure
from atb.runtime.context import RunContext
from atb.runtime.node import Node

__all__ = [
    "HealthPortInUse", "HealthServer", "HealthServerConfig", "redact_payload", "resolve_port",
]  # fmt: skip

_LOG_LEVELS = {"debug", "info", "warning", "error", "critical"}


class HealthServer(Node[HealthServerConfig]):
    def __init__(self, config: NodeConfig, ctx: RunContext, **nodes: Any) -> None:
        super().__init__(config, ctx)
        self.nodes = nodes
        # The one place this node reads the run's probes: the server process sees them only
        # through the channel requests answered below.
        self.probes = ctx.probes
        env = CheckEnv(ctx=ctx, probes=self.probes, server_env=server_env())
        # Built here too so a bad check list fails the run before any process starts.
        self.checks: list[Check] = build_checks(self.config, env)
        self.port: int | None = None
        self.port_source = "config:health.port"
        self.host = "127.0.0.1"
        self.host_source = "config"
        self.token: str | None = None
        self.started_wall = time.time()
        self.pid: int | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        self._sockets: list[socket.socket] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._link: Link | None = None
        self._stop = threading.Event()
        self._publisher: threading.Thread | None = None
        self._respawn_lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://{exposure.display_host(self.host)}:{self.port}"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        port, self.port_source = resolve_port(self.config.port)
        self.host, self.host_source = exposure.resolve_host(self.config.host)
        self.token = os.environ.get(self.config.token_env, "").strip() or None
        if self.token is not None:
            # The token must never be printed, whatever the run's redaction config lists.
            get_redactor().add_secrets([self.token])
        exposure.check_exposure(
            "health server",
            self.host,
            authenticated=self.token is not None,
            allow_unauthenticated=self.config.allow_unauthenticated,
            how=f"set {self.config.token_env} (bearer token for /status and /metrics)",
            override="set health.allow_unauthenticated=true",
        )
        self._sockets = _bind(port, self.host, self.port_source)
        self.port = self._sockets[0].getsockname()[1]
        metrics.set_run_labels(
            mode=self.ctx.mode,
            strategy=self.ctx.strategy or "none",
            symbol=self.ctx.symbol,
            run_id=self.ctx.run_id,
        )
        self._stop.clear()
        try:
            self._spawn()
        except Exception:
            self._close_sockets()
            raise
        self.started_wall = time.time()
        self._publisher = threading.Thread(
            target=self._publish_forever, name="atb-health-publish", daemon=True
        )
        self._publisher.start()
        logger.info(
            "health server listening on {}:{} (host from {}, port from {}; {}; process {}): "
            "/health /livez /readyz open, /status /metrics {} (and /api/*)",
            self.host,
            self.port,
            self.host_source,
            self.port_source,
            self.url,
            self.pid,
            "need the bearer token" if self.token else "unauthenticated",
        )

    def stop(self) -> None:
        self._stop.set()
        if self._publisher is not None:
            self._publisher.join(2)
            self._publisher = None
        link, proc = self._link, self._proc
        if link is not None:
            with contextlib.suppress(LinkClosed, TimeoutError, RuntimeError):
                link.request("stop", 5)  # closes open connections before the port goes
            link.close()
        if proc is not None:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._link = self._proc = None
        self._close_sockets()

    def _close_sockets(self) -> None:
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    # -- the server process -------------------------------------------------------------------

    def _spawn(self) -> None:
        ours, theirs = socket.socketpair()
        fds = [s.fileno() for s in self._sockets]
        # The child imports exactly the modules this process imports (custom checks too).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        proc = subprocess.Popen(
            [sys.executable, "-m", "atb.health.process", str(theirs.fileno()),
             ",".join(map(str, fds))],
            pass_fds=(theirs.fileno(), *fds),
            stdin=subprocess.DEVNULL,
            env=env,
            # Its own session: a terminal's Ctrl-C reaches the run, which stops it in order.
            start_new_session=True,
        )  # fmt: skip
        theirs.close()
        link = Link(
            ours,
            handlers={"probe": self._read_probe, "metrics": self._render_metrics},
            on_event=self._on_event,
            on_close=lambda: self._on_close(proc),
            name="atb-health-link",
        ).start()
        self._proc, self._link = proc, link
        try:
            answer = link.request("init", self.config.start_timeout, **self._init_args())
        except Exception as exc:
            link.close()
            proc.kill()
            proc.wait(5)
            self._proc = self._link = None
            raise RuntimeError(f"health server failed to start: {exc}") from None
        self.pid = int(answer["pid"])

    def _init_args(self) -> dict[str, Any]:
        ctx = self.ctx
        engine = getattr(self.nodes.get("db"), "engine", None)
        return {
            "config": self.config.model_dump(mode="json", by_alias=True, serialize_as_any=True),
            "ctx": {
                "run_id": ctx.run_id, "mode": ctx.mode, "symbol": ctx.symbol,
                "timeframe": ctx.timeframe, "strategy": ctx.strategy, "config": ctx.config,
                "secrets": sorted(ctx.secrets), "config_sources": ctx.config_sources,
                "sweep_id": ctx.sweep_id, "job_num": ctx.job_num,
                "exchange": None if ctx.exchange is None else dataclasses.asdict(ctx.exchange),
            },
            "token": self.token,
            "db_url": None if engine is None else engine.url.render_as_string(hide_password=False),
            "server_env": server_env(),
            "labels": metrics.run_labels(),
            "state": self._state(),
            # The run's redactor, rules and secret values included: the one redactor.
            "redactor": base64.b64encode(pickle.dumps(get_redactor())).decode(),
        }  # fmt: skip

    def _on_close(self, proc: subprocess.Popen[bytes]) -> None:
        """Link thread: the server process's end closed."""
        if self._stop.is_set() or proc is not self._proc:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(2)
        code = proc.poll()
        self.last_exit = f"exit code {code}" if code is not None else "channel closed"
        threading.Thread(target=self._respawn, name="atb-health-respawn", daemon=True).start()

    def _respawn(self) -> None:
        with self._respawn_lock:
            if self._stop.is_set():
                return
            if self.restarts >= self.config.max_restarts:
                logger.critical(
                    "health server process died ({}) after {} restart(s): port {} closed, "
                    "the run goes on without /health",
                    self.last_exit,
                    self.restarts,
                    self.port,
                )
                self._link = self._proc = None
                self._close_sockets()
                return
            self.restarts += 1
            logger.error(
                "health server process {} died ({}); starting another on port {} ({} of {})",
                self.pid,
                self.last_exit,
                self.port,
                self.restarts,
                self.config.max_restarts,
            )
            try:
                self._spawn()
            except RuntimeError as exc:
                logger.critical("{}: port {} closed", exc, self.port)
                self._close_sockets()

    # -- what the server process asks ---------------------------------------------------------

    def _read_probe(self, args: dict[str, Any]) -> dict[str, Any] | None:
        return self.probes.read(str(args.get("name")))

    def _render_metrics(self, _args: dict[str, Any]) -> dict[str, Any]:
        try:
            state = self.probes.read("journal")
        except Exception:  # a broken provider must not break the scrape
            state = None
        if isinstance(state, dict):
            metrics.set_journal(
                queue_depth=_int_or_none(state.get("queue_depth")),
                spilled=_int_or_none(state.get("spilled")),
                written=_int_or_none(state.get("written")),
            )
        return {"text": metrics.render().decode(), "labels": metrics.run_labels()}

    def _on_event(self, frame: dict[str, Any]) -> None:
        if frame.get("t") == "log":
            level = str(frame.get("level"))
            level = level if level in _LOG_LEVELS else "info"
            getattr(logger, level)("health server: {}", frame.get("msg"))

    # -- publishing ---------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        return {
            "heartbeat": heartbeat_fields(self.probes.heartbeat),
            "stopping": self.ctx.stopping,
            "supervisor": {
                "pid": self.pid, "restarts": self.restarts, "last_exit": self.last_exit,
            },
        }  # fmt: skip

    def _publish_forever(self) -> None:
        while not self._stop.wait(self.config.publish_interval):
            link = self._link
            if link is None:
                continue
            with contextlib.suppress(LinkClosed):
                link.event(t="state", **self._state())

    def sync(self, timeout: float = 10.0) -> None:
        """Publish now and return once the server process has applied it."""
        link = self._link
        if link is not None:
            link.request("state", timeout, **self._state())

    def stats(self) -> dict[str, Any]:
        """The server process's connection counters (and supervision record)."""
        link = self._link
        if link is None:
            return {}
        value = link.request("stats", 10)
        return value if isinstance(value, dict) else {}


def _bind(port: int, host: str, source: str) -> list[socket.socket]:
    try:
        return tornado.netutil.bind_sockets(port, host, family=socket.AF_UNSPEC, backlog=1024)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise HealthPortInUse(
                f"health server: port {port} on {host} is already in use (from {source}); "
                "stop the other process or pick another port with PORT, HEALTH_CHECK_PORT "
                "or health.port"
            ) from None
        raise HealthPortInUse(
            f"health server: cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None


def _int_or_none(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)
