"""Every option of every config group composes and validates (Hydra's compose API)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from atb.__main__ import CONFIG_DIR
from atb.config.validate import validate_config
from atb.runtime.help import defaults, group_options

# Options that cannot validate alone, with the overrides a user must add to them.
NEEDS: dict[tuple[str, str], list[str]] = {
    ("mode", "live"): [
        "live.i_understand_the_risks=true",
        "exchange.api_key=k",
        "exchange.api_secret=s",
    ],
    ("data", "csv"): ["data.path=somewhere.csv"],
}


def all_options() -> list[tuple[str, str]]:
    return [(g, o) for g, opts in group_options(Path(CONFIG_DIR)).items() for o in opts]


@pytest.fixture(scope="module", autouse=True)
def hydra_init() -> Iterator[None]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        yield


@pytest.mark.parametrize(("group", "option"), all_options(), ids=lambda v: str(v))
def test_option_composes_and_validates(group: str, option: str) -> None:
    # Groups outside the defaults list (experiment) are added with `+`, as users do.
    prefix = "" if group in defaults(Path(CONFIG_DIR)) else "+"
    choice = f"{prefix}{group}={option}"
    cfg = compose("config", overrides=[choice, *NEEDS.get((group, option), [])])
    validated = validate_config(cfg)
    assert validated.order, "an empty run graph"
    assert validated.settings.runner.main in validated.nodes


def test_every_default_is_an_existing_option() -> None:
    options = group_options(Path(CONFIG_DIR))
    for group, choice in defaults(Path(CONFIG_DIR)).items():
        assert choice in options.get(group, []), f"{group}: default '{choice}' has no file"


def test_default_run_is_a_backtest_of_ml_basic() -> None:
    validated = validate_config(compose("config"))
    assert validated.settings.mode == "backtest"
    assert validated.raw["strategy"]["name"] == "ml_basic"
    assert "health" in validated.disabled
