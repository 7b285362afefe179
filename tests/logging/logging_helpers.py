"""Compose the `logging` section the way `python -m atb` does."""

from __future__ import annotations

from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from atb.__main__ import CONFIG_DIR


def composed_logging(*overrides: str) -> Any:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides)).logging
