"""The `logging` run-graph node: configures the sinks and the run's log context."""

from __future__ import annotations

from atb.config.base import NodeConfig
from atb.config.logging import LoggingConfig
from atb.logging.context import set_run_context
from atb.logging.redaction_node import RedactionNode
from atb.logging.setup import configure_logging, shutdown
from atb.runtime.context import RunContext
from atb.runtime.node import Node


class LoggingNode(Node[LoggingConfig]):
    """Configured at construction, so nodes built after it already log through its sinks."""

    infrastructure = True

    def __init__(
        self, config: NodeConfig, ctx: RunContext, redaction: RedactionNode | None = None
    ) -> None:
        super().__init__(config, ctx)
        self.redaction = redaction
        # process-wide, so every thread of the run carries these keys
        set_run_context(
            run_id=ctx.run_id,
            session_id=ctx.run_id,  # the seed's name for the run, indexed by aggregators
            mode=ctx.mode,
            symbol=ctx.symbol,
            strategy=ctx.strategy,
        )
        self.state = configure_logging(
            config=self.config,
            env_overrides=False,  # LOG_* are in the config already (conf/logging/_base.yaml)
            redactor=redaction.redactor if redaction is not None else None,
            run_id=ctx.run_id,
            mode=ctx.mode,
            output_dir=str(ctx.output_dir) if ctx.output_dir is not None else ".",
        )

    def start(self) -> None:
        """Sinks are live from construction; nothing more to acquire."""

    def stop(self) -> None:
        """Flush and complete every sink; records after this are written inline."""
        shutdown()
