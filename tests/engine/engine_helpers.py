"""Test nodes and builders for the engine tests (imported by `_target_`, so a plain module)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from atb.config.base import NodeConfig
from atb.db.models import Base
from atb.runtime.context import RunContext
from atb.runtime.node import Node
from atb.strategies.base import SignalFrame, Strategy, StrategyConfig


class MemoryDatabase(Node[NodeConfig]):
    """The `db` node's contract (engine, session()) on an in-memory SQLite with every table."""

    config_model: ClassVar[type[NodeConfig]] = NodeConfig

    def __init__(self, config: NodeConfig, ctx: RunContext, **needs: Any) -> None:
        super().__init__(config, ctx)
        self.engine = create_engine(
            "sqlite://", poolclass=StaticPool, connect_args={"check_same_thread": False}
        )
        Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session


class BrokenStrategy(Strategy):
    def signals(self, bars: pd.DataFrame) -> SignalFrame:
        raise RuntimeError("model exploded")


class ScriptedStrategy(Strategy):
    """Signals given up front (tests set `script` before the run)."""

    script: ClassVar[dict[int, int]] = {}

    def signals(self, bars: pd.DataFrame) -> SignalFrame:
        direction = np.zeros(len(bars), dtype=np.int8)
        for i, d in self.script.items():
            direction[i] = d
        return SignalFrame(direction=direction, size=np.ones(len(bars)))


def make_bars(
    rows: list[tuple[float, float, float, float]], start: str = "2024-01-01"
) -> pd.DataFrame:
    """Hourly bars from (open, high, low, close) tuples."""
    index = pd.date_range(start, periods=len(rows), freq="h", tz="UTC", name="time").as_unit("ns")
    frame = pd.DataFrame(rows, columns=["open", "high", "low", "close"], index=index, dtype=float)
    frame["volume"] = 1.0
    return frame


def strategy_config(**kw: Any) -> StrategyConfig:
    return StrategyConfig.model_validate({"_target_": "x", "name": "scripted", **kw})


def run_config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "mode": "backtest",
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "runner": {"main": "backtest", "write_outputs": False},
        "db": {"_target_": "engine_helpers.MemoryDatabase"},
        "data": {
            "_target_": "atb.data.node.MarketData",
            "path": None,
            "start": "2024-06-01",
            "end": "2024-09-01",
        },
        "strategy": {
            "_target_": "atb.strategies.sma_crossover.SmaCrossover",
            "name": "sma_crossover",
            "fast": 10,
            "slow": 50,
        },
        "backtest": {
            "_target_": "atb.engine.backtest.Backtest",
            "needs": ["data", "strategy", "db"],
            "summary": False,
        },
    }
    for key, value in overrides.items():
        node, _, field = key.partition("__")
        if field:
            cfg[node][field] = value
        else:
            cfg[node] = value
    return cfg


class PredictingStrategy(Strategy):
    """HOLD everywhere, one prediction per bar (every 3rd confidence missing)."""

    def signals(self, bars: pd.DataFrame) -> SignalFrame:
        n = len(bars)
        confidence = np.linspace(0, 1, n)
        confidence[::3] = np.nan
        predictions = pd.DataFrame(
            {
                "predicted_price": bars["close"].to_numpy() * 1.01,
                "r": np.full(n, 0.01),
                "confidence": confidence,
                "direction": np.ones(n, dtype=np.int8),
                "model_id": "m1",
            },
            index=bars.index,
        )
        return SignalFrame(
            direction=np.zeros(n, dtype=np.int8), size=np.zeros(n), predictions=predictions
        )
