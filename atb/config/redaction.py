"""Settings of the `redaction` node: which keys, patterns and values never reach an output.

The built-in rules live in `atb.logging.redaction` (and are repeated in
`conf/redaction/default.yaml` so that `--cfg job` shows them); users extend them with
`extra_keys` / `patterns` / `secret_env` without having to restate the defaults.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from atb.config.base import NodeConfig, StrictModel
from atb.logging.redaction import DEFAULT_KEYS, DEFAULT_SECRET_ENV


class PatternRule(StrictModel):
    """A user regex; the `group` (0 = whole match) is replaced by the replacement text."""

    name: str = Field(min_length=1)
    regex: str = Field(min_length=1)
    group: int = Field(0, ge=0)
    ignore_case: bool = True

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from exc
        return value


class RedactionConfig(NodeConfig):
    target: str = Field("atb.logging.redaction_node.RedactionNode", alias="_target_", min_length=1)
    replacement: str = Field("[REDACTED]", min_length=1)
    keys: list[str] = Field(default_factory=lambda: list(DEFAULT_KEYS))
    extra_keys: list[str] = Field(default_factory=list, description="added to `keys`")
    builtin_patterns: bool = Field(
        True, description="key=value / JSON / Bearer / URL-credential / signed-query patterns"
    )
    patterns: list[PatternRule] = Field(default_factory=list, description="user regexes")
    secret_env: list[str] = Field(default_factory=lambda: list(DEFAULT_SECRET_ENV))
    secrets_from_config: bool = Field(
        True, description="redact the actual secret values found in the validated config"
    )
    min_secret_length: int = Field(
        6, ge=1, description="shorter values are not redacted by value (would mangle text)"
    )

    @field_validator("keys", "extra_keys")
    @classmethod
    def _non_empty(cls, value: list[str]) -> list[str]:
        for key in value:
            if not key.strip():
                raise ValueError("key names must not be empty")
        return value
