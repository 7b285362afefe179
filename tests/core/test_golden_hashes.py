"""Restructuring must not change what a run computes: the result hashes of the default run,
sma_crossover and a two-job sweep are pinned here (they were taken on main at fa5b517)."""

from __future__ import annotations

from typing import Any

import pytest
from atb_testkit.outage import compose

from atb.config.validate import validate_config
from atb.runtime.context import RunContext
from atb.runtime.runner import Runner

GOLDEN = {
    (): "93274b97ff330442c418dbad0e27fa4b5fe76bcf80fde500d23d17f69b8d2ef9",
    ("strategy=sma_crossover",): (
        "baa628787186738a82c946b4447477710a4ec2bb39e41c018d7c9262a7d9f963"
    ),
    # The two jobs of `-m strategy=sma_crossover strategy.fast=5,10`.
    ("strategy=sma_crossover", "strategy.fast=5"): (
        "85cb640baea974cf7ea6d9791d9f75d3aeb0cf721a56d8a86e08a01b2a4e236e"
    ),
    ("strategy=sma_crossover", "strategy.fast=10"): (
        "baa628787186738a82c946b4447477710a4ec2bb39e41c018d7c9262a7d9f963"
    ),
}


@pytest.mark.parametrize("overrides", list(GOLDEN), ids=lambda o: " ".join(o) or "default")
def test_result_hash_is_unchanged(overrides: tuple[str, ...], tmp_path: Any) -> None:
    cfg = compose([*overrides, f"db.url=sqlite:///{tmp_path}/g.db", "health=off"])
    strategy = "sma_crossover" if overrides else "ml_basic"
    result = Runner(validate_config(cfg), RunContext(mode="backtest", strategy=strategy)).run()
    assert result["result_hash"] == GOLDEN[overrides]
