"""The `logging` run-graph node: configures the sinks and the run's log context."""

from __future__ import annotations

from typing import ClassVar

from atb.config.logging import LoggingConfig
from atb.logging.context import set_run_context
from atb.logging.redaction_node import RedactionNode
from atb.logging.setup import configure_logging, shutdown
from atb.runtime.context import RunContext


class LoggingNode:
    """Configured at construction, so nodes built after it already log through its sinks."""

    config_model: ClassVar[type[LoggingConfig]] = LoggingConfig

    def __init__(
        self, config: LoggingConfig, ctx: RunContext, redaction: RedactionNode | None = None
    ) -> None:
        self.config = config
        self.ctx = ctx
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
            config=config,
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
