"""The `redaction` run-graph node: builds the run's redactor from its config and installs it."""

from __future__ import annotations

from collections.abc import Iterable

from atb.config.base import NodeConfig
from atb.config.redaction import RedactionConfig
from atb.logging.redaction import Redactor, secrets_from_env, set_redactor
from atb.runtime.context import RunContext
from atb.runtime.node import Node


def redactor_from_config(config: RedactionConfig, secrets: Iterable[str] = ()) -> Redactor:
    collected = set(secrets_from_env(config.secret_env))
    if config.secrets_from_config:
        collected |= set(secrets)
    return Redactor(
        [*config.keys, *config.extra_keys],
        secrets=collected,
        patterns=config.patterns,
        builtin_patterns=config.builtin_patterns,
        replacement=config.replacement,
        min_secret_length=config.min_secret_length,
    )


class RedactionNode(Node[RedactionConfig]):
    """Run-graph node: builds the run's redactor and installs it process-wide."""

    infrastructure = True

    def __init__(self, config: NodeConfig, ctx: RunContext) -> None:
        super().__init__(config, ctx)
        self.redactor = redactor_from_config(self.config, ctx.secrets)
        set_redactor(self.redactor)

    def start(self) -> None:
        """Nothing to acquire: the redactor is active from construction."""

    def stop(self) -> None:
        """Keeps the redactor installed: output written after the run still needs it."""
