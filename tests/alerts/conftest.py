"""Fixtures for the alert tests: a real HTTP receiver and a router factory."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alert_helpers import MakeRouter, Receiver

from atb.alerts.config import AlertsConfig
from atb.alerts.router import AlertRouter
from atb.runtime.context import RunContext


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def make_router() -> Iterator[MakeRouter]:
    """Build and start routers; every one is stopped at the end of the test."""
    started: list[AlertRouter] = []

    def make(
        rules: list[dict[str, Any]],
        channels: list[dict[str, Any]],
        journal: Any = None,
        mode: str = "paper",
        **settings: Any,
    ) -> AlertRouter:
        config = AlertsConfig.model_validate({
            "_target_": "atb.alerts.router.AlertRouter",
            "tick": 0.05,
            "stop_timeout": 2,
            "rules": rules,
            "channels": channels,
            **settings,
        })  # fmt: skip
        ctx = RunContext(mode=mode, symbol="BTCUSDT", strategy="ml_basic")
        router = AlertRouter(config, ctx, journal=journal)
        router.start()
        started.append(router)
        return router

    yield make
    for router in started:
        router.ctx.stop_event.set()
        router.stop()
