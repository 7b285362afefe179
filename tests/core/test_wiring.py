"""How nodes are declared and ordered: Node[C], infrastructure nodes, TargetList fields."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest
from pydantic import Field, ValidationError

from atb.config.base import NodeConfig, format_validation_error
from atb.config.logging import LoggingConfig
from atb.config.validate import validate_config
from atb.health.server import HealthServerConfig
from atb.runtime.context import RunContext
from atb.runtime.node import Node
from atb.strategies.base import Strategy, StrategyConfig
from atb.strategies.sma_crossover import SmaCrossover, SmaCrossoverConfig


class PingConfig(NodeConfig):
    target: str = Field("x.Ping", alias="_target_")
    times: int = 1


class Ping(Node[PingConfig]):
    def run(self) -> int:
        return self.config.times


P = TypeVar("P", bound=PingConfig)


class GenericPing(Node[P]):
    pass


class LoudPingConfig(PingConfig):
    volume: int = 11


class LoudPing(GenericPing[LoudPingConfig]):
    pass


def test_the_type_parameter_is_the_config_model() -> None:
    assert Ping.config_model is PingConfig
    assert GenericPing.config_model is PingConfig  # a TypeVar: its bound
    assert LoudPing.config_model is LoudPingConfig
    assert Strategy.config_model is StrategyConfig
    assert SmaCrossover.config_model is SmaCrossoverConfig
    assert Ping(PingConfig(times=3), RunContext()).run() == 3


def test_a_node_refuses_another_nodes_config() -> None:
    with pytest.raises(TypeError, match="Ping takes a PingConfig, got NodeConfig"):
        Ping(NodeConfig(_target_="x"), RunContext())


def test_an_explicit_config_model_still_wins() -> None:
    class Legacy(Node[PingConfig]):
        config_model = LoudPingConfig

    assert Legacy.config_model is LoudPingConfig


def test_infrastructure_nodes_come_first_without_being_needed() -> None:
    cfg: dict[str, Any] = {
        "runner": {"main": "strategy"},
        "strategy": {"_target_": "atb.strategies.sma_crossover.SmaCrossover"},
        "logging": {"_target_": "atb.logging.node.LoggingNode", "needs": ["redaction"]},
        "redaction": {"_target_": "atb.logging.redaction_node.RedactionNode"},
    }
    assert validate_config(cfg).order == ["redaction", "logging", "strategy"]


def test_target_lists_report_every_bad_entry() -> None:
    with pytest.raises(ValidationError) as info:
        LoggingConfig.model_validate(
            {"sinks": [{"kind": "json", "level": "LOUD"}, {"kind": "nope"}, {"x": 1}]}
        )
    lines = format_validation_error(info.value, prefix="logging")
    assert any(line.startswith("logging.sinks.0.level:") for line in lines)
    assert any(line.startswith("logging.sinks.1.kind: must be one of console") for line in lines)
    assert any(line.startswith("logging.sinks.2._target_: required") for line in lines)
    with pytest.raises(ValidationError) as info:
        HealthServerConfig.model_validate(
            {
                "checks": [
                    {"_target_": "atb.health.checks.DatabaseCheck", "slow": 1},
                    {"_target_": "atb.alerts.channels.LogChannel"},
                ]
            }
        )
    lines = format_validation_error(info.value, prefix="health")
    assert any(line.startswith("health.checks.0.slow: unknown key") for line in lines)
    assert any(
        "health.checks.1._target_" in line and "not a health check" in line for line in lines
    )
