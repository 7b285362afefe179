"""Pydantic models that validate the composed Hydra config, one module per domain."""

from atb.config.base import NodeConfig, StrictModel, field_error
from atb.config.validate import ValidatedConfig, validate_config

__all__ = ["NodeConfig", "StrictModel", "ValidatedConfig", "field_error", "validate_config"]
