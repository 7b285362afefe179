"""The LOG_* variables resolve inside the composed config (conf/logging/_base.yaml).

So `python -m atb --cfg job --resolve` prints what the run uses, a command-line override
beats the environment, and a bad value names the variable it came from.
"""

from __future__ import annotations

from typing import Any

import pytest
from logging_helpers import composed_logging
from omegaconf import OmegaConf

from atb.config.logging import LoggingConfig
from atb.config.validate import validate_config
from atb.runtime.errors import ConfigError

LOG_VARS = (
    "LOG_LEVEL",
    "LOG_JSON",
    "LOG_MAX_MESSAGE_LEN",
    "LOG_SQLALCHEMY_LEVEL",
    "LOG_CCXT_LEVEL",
)


@pytest.fixture(autouse=True)
def _no_log_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in LOG_VARS:
        monkeypatch.delenv(var, raising=False)


def resolved(*overrides: str) -> dict[str, Any]:
    data = OmegaConf.to_container(composed_logging(*overrides), resolve=True)
    assert isinstance(data, dict)
    return data  # type: ignore[return-value]


def test_defaults_without_environment() -> None:
    cfg = LoggingConfig.model_validate(resolved())
    assert (cfg.level, cfg.json_output, cfg.max_message_len) == ("INFO", None, 8192)
    assert cfg.library_levels["sqlalchemy"] == "WARNING"


def test_environment_shows_in_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("LOG_JSON", "1")
    monkeypatch.setenv("LOG_MAX_MESSAGE_LEN", "100")
    monkeypatch.setenv("LOG_CCXT_LEVEL", "ERROR")
    cfg = LoggingConfig.model_validate(resolved("logging=production"))
    assert (cfg.level, cfg.json_output, cfg.max_message_len) == ("DEBUG", True, 100)
    assert cfg.library_levels["ccxt"] == "ERROR"


def test_a_command_line_override_beats_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    assert resolved("logging.level=DEBUG")["level"] == "DEBUG"


def test_the_presets_share_everything_but_their_sinks() -> None:
    console, json_, production = (
        resolved(f"logging={n}") for n in ("console", "json", "production")
    )
    for preset in (json_, production):
        differs = {k for k in console if console[k] != preset[k]}
        assert differs <= {"sinks", "flush_interval"}
    assert [s["name"] for s in production["sinks"]] == ["json", "file"]


def test_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "chatty")
    raw = {
        "runner": {"main": "logging"},
        "redaction": {"_target_": "atb.logging.redaction_node.RedactionNode"},
    }
    cfg = OmegaConf.merge(OmegaConf.create(raw), {"logging": composed_logging()})
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    (problem,) = info.value.problems
    assert problem.startswith("logging.level: ")
    assert problem.endswith("(from the environment variable LOG_LEVEL)")
