"""The health server process: `python -m atb.health.process LINK_FD LISTEN_FD[,LISTEN_FD]`.

Started by the `health` node (atb/health/server.py), never by hand. It inherits the
listening socket(s) the node bound and one end of the node's private channel
(atb/health/link.py). The node's `init` request carries everything else: the health
config, the run's identity and config, the bearer token, the database URL and the run's
redactor. From then on this process answers every HTTP request itself (tornado on its own
asyncio loop) and runs the `/status` checks on its own worker threads, so no request costs
the trading process any GIL time.

It exits as soon as the channel closes: the trading process stopped it, or died (even by
SIGKILL), and the port must close with it rather than keep answering.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import pickle
import signal
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from loguru import logger

from atb.api.handlers import ApiSource
from atb.health import metrics
from atb.health.cache import CheckCache
from atb.health.checks import CheckEnv
from atb.health.config import HealthServerConfig, build_checks
from atb.health.http import make_app
from atb.health.limits import LimitedHTTPServer
from atb.health.link import Link
from atb.health.service import HealthService
from atb.logging.redaction import set_redactor
from atb.runtime import tuning
from atb.runtime.context import ExchangeTarget, RunContext


class RemoteProbes:
    """`Probes.read()` answered by the trading process over the channel."""

    def __init__(self, link: Link, timeout: float) -> None:
        self.link = link
        self.timeout = timeout

    def read(self, name: str) -> dict[str, Any] | None:
        value = self.link.request("probe", self.timeout, name=name)
        return value if isinstance(value, dict) else None


class ServerProcess:
    def __init__(self, listen_fds: list[int]) -> None:
        self.listen_fds = listen_fds
        self.link: Link | None = None
        self.service: HealthService | None = None
        self.db_url: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._stopped = threading.Event()

    # -- requests from the trading process -----------------------------------------------------

    def init(self, args: dict[str, Any]) -> dict[str, Any]:
        assert self.link is not None
        set_redactor(pickle.loads(base64.b64decode(args["redactor"])))
        config = HealthServerConfig.model_validate(args["config"])
        run = dict(args["ctx"])
        exchange = run.pop("exchange", None)
        secrets = frozenset(run.pop("secrets", None) or ())
        target = None if exchange is None else ExchangeTarget(**exchange)
        ctx = RunContext(**run, secrets=secrets, exchange=target)
        env = CheckEnv(
            ctx=ctx,
            probes=RemoteProbes(self.link, config.check_timeout),
            server_env=dict(args.get("server_env") or {}),
            db_url=args.get("db_url"),
        )
        checks = build_checks(config, env)
        self.db_url = env.db_url
        labels = args.get("labels") or {}
        metrics.set_run_labels(**{k: labels.get(k) for k in ("mode", "strategy", "symbol")})
        metrics.set_run_labels(run_id=ctx.run_id)
        for check in checks:
            try:
                check.prepare()
            except Exception as exc:  # run() reports it in /status; start-up goes on
                logger.warning("health check {} could not prepare: {}", check.name, exc)
        # The HTTP loop shares this process's GIL with the check workers; a short interval
        # bounds how long a Python-heavy check can delay a probe's answer. (The trading
        # process's interval is never touched: the server no longer lives there.)
        tuning.shorter_switch_interval(config.gil_switch_interval)
        service = HealthService(
            config,
            ctx,
            checks,
            self.link,
            token=args.get("token"),
            started_wall=time.time(),
        )
        service.update(args.get("state") or {})
        self.service = service
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._serve_thread, args=(ready,), name="atb-health-http", daemon=True
        )
        self._thread.start()
        if not ready.wait(30) or self._error is not None:
            raise RuntimeError(f"cannot serve: {self._error}")
        return {"pid": os.getpid()}

    def state(self, args: dict[str, Any]) -> bool:
        if self.service is not None:
            self.service.update(args)
        return True

    def stats(self, _args: dict[str, Any]) -> dict[str, Any]:
        assert self.service is not None
        return self.service.server_info()

    def stop(self, _args: dict[str, Any]) -> bool:
        """Close the listening socket and every connection, then answer."""
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
            self._stopped.wait(5)
        return True

    def on_event(self, frame: dict[str, Any]) -> None:
        if frame.get("t") == "state" and self.service is not None:
            self.service.update(frame)

    # -- serving -------------------------------------------------------------------------------

    def _serve_thread(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as exc:
            self._error = exc
            ready.set()
        finally:
            self._stopped.set()

    async def _serve(self, ready: threading.Event) -> None:
        service = self.service
        assert service is not None
        config = service.config
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        sockets = []
        for fd in self.listen_fds:
            sock = socket.socket(fileno=fd)
            sock.setblocking(False)
            sockets.append(sock)
        executor = ThreadPoolExecutor(
            max_workers=max(1, len(service.checks)), thread_name_prefix="atb-health-check"
        )
        service.cache = CheckCache(
            service.checks, executor, config.check_timeout, config.cache_ttl, service.ctx.secrets
        )
        api = (
            ApiSource.from_url(
                self.db_url, service.authorized, run_id=service.ctx.run_id,
                live_loop=service.api_loop, timeout=config.check_timeout,
            )
            if self.db_url
            else None
        )  # fmt: skip
        http = LimitedHTTPServer(
            make_app(service, api),
            max_connections=config.max_connections,
            header_timeout=config.header_timeout,
            max_header_size=config.max_header_bytes,
            # GET/HEAD carry no body: anything beyond a token amount is refused unread.
            max_body_size=1024,
            idle_connection_timeout=config.idle_timeout,
            body_timeout=5,
        )
        http.add_sockets(sockets)
        service.http = http
        ready.set()
        refresher = (
            asyncio.create_task(service.refresh_forever(config.refresh_interval))
            if config.refresh_interval
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
        executor.shutdown(wait=False, cancel_futures=True)
        service.cache.close()
        if api is not None:
            api.close()


def _log_sink(link: Link) -> Any:
    def sink(message: Any) -> None:
        record = message.record
        with contextlib.suppress(ConnectionError):
            link.event(t="log", level=record["level"].name.lower(), msg=str(record["message"]))

    return sink


def main(argv: list[str]) -> int:
    # The trading process decides when this process ends; a terminal's Ctrl-C goes to it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    link_fd, listen = int(argv[0]), [int(fd) for fd in argv[1].split(",")]
    server = ServerProcess(listen)
    gone = threading.Event()
    link = Link(
        socket.socket(fileno=link_fd),
        handlers={"init": server.init, "state": server.state, "stats": server.stats,
                  "stop": server.stop},
        on_event=server.on_event,
        on_close=gone.set,
        name="atb-health-server",
    )  # fmt: skip
    server.link = link
    logger.remove()
    logger.add(_log_sink(link), level="INFO", format="{message}")
    link.start()
    gone.wait()
    # The trading process stopped us or died: nothing may answer for it any more.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
