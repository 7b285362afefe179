"""Small real nodes for exercising the runner: they record what happens to them."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from pydantic import Field

from atb.config.base import NodeConfig, field_error
from atb.runtime.context import RunContext
from atb.runtime.node import Node

JOURNAL: list[str] = []


class SampleConfig(NodeConfig):
    fail_on: str | None = Field(None, pattern="^(build|start|run|stop)$")
    sleep: float = Field(0.0, ge=0)
    hang_on_stop: bool = False
    low: int = 0
    high: int = 10

    def model_post_init(self, _: Any) -> None:
        if self.low >= self.high:
            raise field_error("low", "must be < high")


class SampleNode(Node[SampleConfig]):
    config_model: ClassVar[type[NodeConfig]] = SampleConfig

    def __init__(self, config: SampleConfig, ctx: RunContext, **needs: Any) -> None:
        super().__init__(config, ctx)
        self.needs = needs
        self._event("build")

    def _event(self, phase: str) -> None:
        label = getattr(self.config, "label", None) or type(self).__name__
        JOURNAL.append(f"{phase}:{label}")
        if self.config.fail_on == phase:
            raise RuntimeError(f"{phase} failed on purpose")

    def start(self) -> None:
        self._event("start")

    def run(self) -> str:
        self._event("run")
        deadline = time.monotonic() + self.config.sleep
        while time.monotonic() < deadline and not self.ctx.stopping:
            time.sleep(0.01)
        return "done"

    def stop(self) -> None:
        if self.config.hang_on_stop:
            time.sleep(60)
        self._event("stop")


class LabelledConfig(SampleConfig):
    label: str


class Labelled(SampleNode):
    config_model: ClassVar[type[NodeConfig]] = LabelledConfig


class NeedsA(Labelled):
    def __init__(self, config: LabelledConfig, ctx: RunContext, *, a: Any) -> None:
        super().__init__(config, ctx, a=a)
