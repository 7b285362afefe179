"""Serve dashboards from this process on a background thread.

Every JS/CSS file is served by the dashboard server itself (Bokeh's `server` resources):
operators run this on hosts without internet. The server owns its own Tornado IOLoop on
its own thread, so it can live beside a trading engine (the `dashboards` node) and be
stopped cleanly from any thread.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
from collections.abc import Callable, Mapping
from typing import Any

from loguru import logger

from atb.dashboards.auth import DashboardAuth
from atb.runtime.exposure import display_host

AppFactory = Callable[[], Any]


def use_local_resources() -> None:
    """Make Bokeh/Panel emit `/static/...` URLs, never a CDN (set before any page renders)."""
    os.environ["BOKEH_RESOURCES"] = "server"
    from bokeh.settings import settings

    settings.resources = "server"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host if host not in ("", "0.0.0.0") else "127.0.0.1", 0))
        return int(sock.getsockname()[1])


def websocket_origins(host: str, port: int) -> list[str]:
    """Origins allowed to open the session websocket (Bokeh rejects the rest)."""
    if host in ("0.0.0.0", "::", ""):
        # Listening on every interface: the operator chose exposure; any Host may connect.
        return ["*"]
    names = {host, "localhost", "127.0.0.1"}
    return sorted(f"{name}:{port}" for name in names)


class DashboardServer:
    """`apps` maps a URL slug (`monitoring`) to a function building one session's page."""

    def __init__(
        self,
        apps: Mapping[str, AppFactory],
        host: str = "127.0.0.1",
        port: int = 5006,
        title: str | None = None,
        warm: bool = True,
        auth: DashboardAuth | None = None,
        extra_routes: list[Any] | None = None,
    ) -> None:
        self.apps = dict(apps)
        self.host = host
        self.port = port or free_port(host)
        self.title = title
        self.warm = warm
        self.auth = auth
        # Plain tornado routes beside the pages: the JSON API (atb.api.handlers).
        self.extra_routes = list(extra_routes or [])
        self._thread: threading.Thread | None = None
        self._loop: Any = None
        self._server: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        return f"http://{display_host(self.host)}:{self.port}"

    def app_url(self, slug: str) -> str:
        return f"{self.url}/{slug}"

    def start(self, timeout: float = 30.0) -> None:
        """Bind and start serving; raises here (not on the thread) if the port is taken."""
        use_local_resources()
        self._thread = threading.Thread(target=self._run, name="atb-dashboards", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"dashboard server did not start within {timeout:g}s")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        from panel.io.server import get_server
        from tornado.ioloop import IOLoop

        asyncio.set_event_loop(asyncio.new_event_loop())
        self._loop = IOLoop.current()
        try:
            login: dict[str, Any] = {}
            if self.auth is not None:
                # Panel's login page; every app page and its websocket need the signed cookie.
                login = {
                    "basic_auth": self.auth.basic_auth(),
                    "cookie_secret": self.auth.cookie_secret,
                }
            # warm=True builds one throwaway session at start so the first visitor does
            # not pay for imports and model registration (first paint budget).
            self._server = get_server(
                {slug: factory for slug, factory in self.apps.items()},
                port=self.port,
                address=self.host,
                websocket_origin=websocket_origins(self.host, self.port),
                loop=self._loop,
                show=False,
                start=False,
                verbose=False,
                title=self.title or {slug: f"atb · {slug}" for slug in self.apps},
                warm=self.warm,
                extra_patterns=self.extra_routes,
                check_unused_sessions_milliseconds=5_000,
                unused_session_lifetime_milliseconds=15_000,
                **login,
            )
            self._server.start()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self._loop.start()
        finally:
            try:
                self._server.stop(wait=False)
            except Exception:  # pragma: no cover - best effort on the way out
                logger.opt(exception=True).debug("dashboard server stop")
            self._loop.close(all_fds=True)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread; safe to call twice or after a failed start."""
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            loop.add_callback(loop.stop)
            thread.join(timeout)
        self._thread = None

    def wait(self) -> None:
        """Block the caller (the CLI) until the server stops."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)
