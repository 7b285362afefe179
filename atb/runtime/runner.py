"""The small generic runner: build nodes in dependency order, start, run, stop in reverse."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from loguru import logger

from atb.config.validate import ValidatedConfig
from atb.runtime.context import RunContext
from atb.runtime.errors import ConfigError, NodeError


class Runner:
    def __init__(self, validated: ValidatedConfig, ctx: RunContext) -> None:
        self.validated = validated
        self.ctx = ctx
        self.nodes: dict[str, Any] = {}
        self.started: list[str] = []
        self.timings: dict[str, float] = {}

    def run(self) -> Any:
        """Run the graph; raise NodeError naming the node that failed.

        Whatever happens after the first node is built, every started node is stopped in
        reverse order, so sinks flush and connections close even on failure or Ctrl-C.
        """
        main = self.validated.settings.runner.main
        with self._signals():
            try:
                for name in self.validated.order:
                    self.nodes[name] = self._call(name, "build", self._build, name)
                for name in self.validated.order:
                    node = self.nodes[name]
                    if hasattr(node, "start"):
                        self._call(name, "start", node.start)
                    self.started.append(name)
                return self._call(main, "run", self.nodes[main].run)
            finally:
                self.stop_all()

    def _build(self, name: str) -> Any:
        spec = self.validated.nodes[name]
        deps = {need: self.nodes[need] for need in spec.needs if need in self.nodes}
        return spec.cls(config=spec.config, ctx=self.ctx, **deps)

    def _call(self, name: str, phase: str, fn: Any, *args: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args)
        except (NodeError, ConfigError):
            # A node may find a config problem only when built (an env var it reads):
            # that is still a config error, exit 2, not a node failure.
            raise
        except Exception as exc:
            raise NodeError(name, phase, exc) from exc
        finally:
            self.timings[f"{name}.{phase}"] = time.perf_counter() - t0

    def stop_all(self) -> list[NodeError]:
        """Stop started nodes in reverse; a node that fails or hangs does not stop the rest."""
        self.ctx.stop_event.set()
        errors: list[NodeError] = []
        timeout = self.validated.settings.runner.stop_timeout
        while self.started:
            name = self.started.pop()
            node = self.nodes[name]
            if not hasattr(node, "stop"):
                continue
            outcome: list[BaseException] = []

            def stop(node: Any = node, outcome: list[BaseException] = outcome) -> None:
                try:
                    node.stop()
                except BaseException as exc:
                    outcome.append(exc)

            worker = threading.Thread(target=stop, name=f"atb-stop-{name}", daemon=True)
            worker.start()
            worker.join(timeout)
            if worker.is_alive():
                outcome.append(TimeoutError(f"did not stop within {timeout:g}s"))
            for failure in outcome:
                err = NodeError(name, "stop", failure)
                logger.error(str(err))
                errors.append(err)
        return errors

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """First SIGINT/SIGTERM asks nodes to finish; a second one interrupts hard."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: FrameType | None) -> None:
            if self.ctx.stop_event.is_set():
                raise KeyboardInterrupt
            logger.warning(
                "{} received: finishing the current step, then stopping (again to force)",
                signal.Signals(signum).name,
            )
            self.ctx.stop_event.set()

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, prev in previous.items():
                signal.signal(sig, prev)
