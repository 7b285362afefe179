"""The contract between the runner and the classes a config entry names with `_target_`.

A node is built as `cls(config=<its validated model>, ctx=<RunContext>, **needed_nodes)`,
where the keyword names are the node names listed in `needs`. `start`, `stop` and `run`
are optional: the runner calls what a node has.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar

from atb.config.base import NodeConfig
from atb.runtime.context import RunContext

C = TypeVar("C", bound=NodeConfig)


class Node(Generic[C]):
    config_model: ClassVar[type[NodeConfig]] = NodeConfig

    def __init__(self, config: C, ctx: RunContext, **needs: Any) -> None:
        self.config = config
        self.ctx = ctx

    def start(self) -> None:
        """Acquire resources; raise to abort the run before the main node runs."""

    def stop(self) -> None:
        """Release resources and flush; must be safe to call after a failed start."""
