"""Waiting on a server process the test started: fail fast, with its output, if it dies."""

from __future__ import annotations

import http.client
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest


def wait_for_process(
    proc: subprocess.Popen[Any],
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    output: Callable[[], str],
) -> Any:
    """The first truthy value of `predicate` (connection errors count as 'not yet')."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            name = proc.args[0] if isinstance(proc.args, list) else proc.args
            pytest.fail(f"{name} exited ({proc.returncode}) waiting for {what}\n{output()}")
        try:
            last = predicate()
            if last:
                return last
        except (OSError, http.client.HTTPException, ValueError):
            pass
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})\n{output()}")
