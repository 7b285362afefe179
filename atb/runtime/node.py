"""The contract between the runner and the classes a config entry names with `_target_`.

A node states its settings model once, as the type parameter:
`class Backtest(Node[BacktestConfig])`. From it the class gets `config_model` (what
`atb.config.validate` validates the YAML with) and a typed `self.config`. A node is built as
`cls(config=<its validated model>, ctx=<RunContext>, **needed_nodes)`, where the keyword names
are the node names listed in `needs`; a node that takes inputs or keeps state writes its own
`__init__` with `config: NodeConfig` and reads the typed `self.config` after
`super().__init__(config, ctx)`. `start`, `stop` and `run` are optional: the runner calls
what a node has.
"""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar, cast, get_args, get_origin

from atb.config.base import NodeConfig
from atb.runtime.context import RunContext

C = TypeVar("C", bound=NodeConfig)


def declared_model(cls: type, base: type, default: type) -> type:
    """The settings model `cls` names as the type parameter of a `base` subclass.

    `class X(Node[XConfig])` gives XConfig; a generic intermediate (`class Strategy(Node[S])`
    with `S` bound to StrategyConfig) gives the bound; a plain subclass inherits its parent's.
    """
    for orig in cls.__dict__.get("__orig_bases__", ()):
        origin = get_origin(orig)
        if not (isinstance(origin, type) and issubclass(origin, base)):
            continue
        for arg in get_args(orig):
            arg = getattr(arg, "__bound__", None) or arg  # a TypeVar: its bound
            if isinstance(arg, type) and issubclass(arg, default):
                return arg
    return cast(type, getattr(cls, "config_model", default))


class Node(Generic[C]):
    config_model: ClassVar[type[NodeConfig]] = NodeConfig
    infrastructure: ClassVar[bool] = False
    """Built and started before every other node, stopped after them: the services the others
    log through (redaction, logging). The runner orders them first; nobody lists them in
    `needs` just for ordering."""

    config: C

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "config_model" not in cls.__dict__:  # an explicit config_model still wins
            cls.config_model = declared_model(cls, Node, NodeConfig)

    def __init__(self, config: NodeConfig, ctx: RunContext, **needs: Any) -> None:
        if not isinstance(config, self.config_model):
            raise TypeError(
                f"{type(self).__name__} takes a {self.config_model.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = cast(C, config)
        self.ctx = ctx

    def start(self) -> None:
        """Acquire resources; raise to abort the run before the main node runs."""

    def stop(self) -> None:
        """Release resources and flush; must be safe to call after a failed start."""
