"""Helpers for the deploy tests: real processes, real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from atb_testkit.waiting import wait_for_process

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
# Variables that would change where or how an atb server listens: each test sets its own.
HOSTING_ENV = ("HOST", "PORT", "HEALTH_CHECK_PORT", "ENV", "KUBERNETES_SERVICE_HOST")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if (k not in HOSTING_ENV and not k.startswith(("RAILWAY_", "ATB_", "BINANCE_")))
        or k == "ATB_SPILL_DIR"  # the suite's spill directory (tests/conftest.py)
    }
    env.update(extra)
    return env


def http_get(
    port: int, path: str, headers: Mapping[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


class Proc:
    """A background command with its output in a file (read it in failure messages)."""

    def __init__(self, cmd: Sequence[str], env: Mapping[str, str], cwd: Path, log: Path) -> None:
        self.cmd = list(cmd)
        self.log = log
        self._fh = log.open("w")
        self.proc = subprocess.Popen(
            self.cmd, stdout=self._fh, stderr=subprocess.STDOUT, env=dict(env), cwd=cwd
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        return wait_for_process(self.proc, predicate, timeout, what, lambda: self.output()[-4000:])

    def stop(self, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._fh.close()
        return int(self.proc.returncode)


def atb_cmd(*args: str) -> list[str]:
    """The `atb` console script of this interpreter's environment."""
    return [sys.executable, "-m", "atb.cli", *args]


def wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port}")
