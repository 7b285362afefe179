"""Helpers for the health tests: start a real server node, speak real HTTP to it."""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from atb.config.base import NodeConfig
from atb.health.checks import Check, CheckConfig
from atb.health.server import HealthServer, HealthServerConfig
from atb.runtime.context import ExchangeTarget, RunContext
from atb.runtime.node import Node
from atb.runtime.probes import Probes

TARGET = "atb.health.server.HealthServer"

SOURCES = {
    "defaults": ["db=sqlite", "exchange=binance", "health=on"],
    "config_files": ["main:/work/main/conf/config.yaml"],
    "env_vars": [],
    "command_line": ["health=on", "mode=paper"],
}


PROBES = Probes()
"""The probes of every test run built by `make_ctx` (conftest resets them per test)."""


def make_ctx(**kw: Any) -> RunContext:
    base: dict[str, Any] = {
        "probes": PROBES,
        "mode": "paper",
        "strategy": "ml_basic",
        "config": {"exchange": {"_target_": "atb.exchange.replay.ReplayExchange"}},
        "exchange": ExchangeTarget(target="atb.exchange.replay.ReplayExchange"),
        "config_sources": {k: list(v) for k, v in SOURCES.items()},
    }
    base.update(kw)
    return RunContext(**base)


def make_config(**kw: Any) -> HealthServerConfig:
    return HealthServerConfig.model_validate({"_target_": TARGET, "port": 0, **kw})


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    elapsed: float

    def json(self) -> Any:
        return json.loads(self.body)


def request(
    server: HealthServer,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    assert server.port is not None
    # The trading process publishes its state every health.publish_interval; tests that
    # change it just before asking make it arrive first instead of sleeping.
    server.sync()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    t0 = time.perf_counter()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        return Response(
            resp.status,
            {k.lower(): v for k, v in resp.getheaders()},
            data,
            time.perf_counter() - t0,
        )
    finally:
        conn.close()


@contextmanager
def running(
    config: HealthServerConfig | None = None, ctx: RunContext | None = None, **nodes: Any
) -> Iterator[HealthServer]:
    server = HealthServer(config or make_config(), ctx or make_ctx(), **nodes)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- test checks ------------------------------------------------------------------------------


class CountingConfig(CheckConfig):
    sleep: float = 0.0
    result: str = "healthy"
    fail: bool = False
    key: str = "counter"


def _check_dir() -> Path:
    # The checks run in the health server process: runs and releases go through files in
    # a directory the test names (the env var is inherited by the server process).
    return Path(os.environ["ATB_TEST_CHECK_DIR"])


def check_runs(key: str) -> int:
    """How many times the CountingCheck with this key has run (in any process)."""
    path = _check_dir() / f"{key}.runs"
    return int(path.read_text()) if path.exists() else 0


def release_checks() -> None:
    """Wake every CountingCheck sleeping in `sleep`."""
    (_check_dir() / "release").touch()


class CountingCheck(Check):
    """Counts its runs (per `key`), optionally sleeping, failing or returning a status."""

    config_model: ClassVar[type[CheckConfig]] = CountingConfig
    default_name = "counting"
    config: CountingConfig

    def run(self) -> dict[str, Any]:
        runs = check_runs(self.config.key) + 1
        (_check_dir() / f"{self.config.key}.runs").write_text(str(runs))
        deadline = time.monotonic() + self.config.sleep
        while time.monotonic() < deadline and not (_check_dir() / "release").exists():
            time.sleep(0.01)
        if self.config.fail:
            raise ConnectionError("boom at postgresql://atb:hunter2@db:5432/x")
        return {"status": self.config.result, "runs": runs}


def counting(name: str, **kw: Any) -> dict[str, Any]:
    return {"_target_": "health_helpers.CountingCheck", "name": name, "key": name, **kw}


# -- a tiny engine node for runner-level tests ------------------------------------------------


class BeatingEngineConfig(NodeConfig):
    beats: int = Field(3, ge=0)
    interval: float = Field(0.05, gt=0)
    linger: float = Field(0.0, ge=0, description="seconds to stay up after beating")


class BeatingEngine(Node[BeatingEngineConfig]):
    config_model: ClassVar[type[NodeConfig]] = BeatingEngineConfig
    seen: ClassVar[list[Any]] = []

    def __init__(self, config: BeatingEngineConfig, ctx: RunContext, **needs: Any) -> None:
        super().__init__(config, ctx)
        self.needs = needs

    def run(self) -> str:
        self.ctx.probes.heartbeat.start(interval=self.config.interval)
        for _ in range(self.config.beats):
            self.ctx.probes.heartbeat.beat()
            time.sleep(self.config.interval)
        deadline = time.monotonic() + self.config.linger
        while time.monotonic() < deadline and not self.ctx.stopping:
            time.sleep(0.01)
        health = self.needs.get("health")
        if health is not None:
            self.seen.append(request(health, "/health").json())
        return "done"


def occupied_port() -> tuple[socket.socket, int]:
    """A listening socket on a free port (the caller closes it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock, sock.getsockname()[1]


@dataclass
class BlackHole:
    """A TCP server that accepts connections and never answers: a hung database."""

    sock: socket.socket = field(default_factory=socket.socket)
    conns: list[socket.socket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()
