"""The backtest reads its trades' times off the bar index for the metrics and the hash:
exactly what converting each trade's datetimes gives, on every kind of run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atb.data.loader import load_bars
from atb.engine.backtest import BacktestSettings, run_backtest
from atb.engine.metrics import compute_metrics
from atb.engine.records import result_hash
from atb.engine.risk import RiskSettings
from atb.runtime.context import RunContext
from atb.strategies.base import SignalFrame, Strategy, StrategyConfig


class _Random(Strategy):
    """Random BUY/SELL/HOLD with stops and takes: longs, shorts, stop exits, reversals."""

    seed = 0

    def signals(self, bars: pd.DataFrame) -> SignalFrame:
        rng = np.random.default_rng(self.seed)
        n = len(bars)
        return SignalFrame(
            direction=rng.choice(np.array([-1, 0, 0, 0, 1], dtype=np.int8), n),
            size=rng.uniform(0.1, 1.0, n),
            stop_loss=np.full(n, 0.01),
            take_profit=np.full(n, 0.02),
        )


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("shorts", [False, True])
@pytest.mark.parametrize("close_at_end", [False, True])
def test_bar_index_times_are_the_datetimes_own(seed: int, shorts: bool, close_at_end: bool) -> None:
    bars = load_bars().iloc[:3000]
    strategy = _Random(StrategyConfig(_target_="x", name="random"), RunContext())
    strategy.seed = seed
    settings = BacktestSettings(risk=RiskSettings(allow_shorts=shorts), close_at_end=close_at_end)
    result = run_backtest(bars, strategy, settings, bar_seconds=3600.0)
    assert len(result.trades) > 20
    reasons = {t.exit_reason for t in result.trades}
    assert {"signal", "stop_loss", "take_profit"} <= reasons

    by_datetimes = compute_metrics(
        result.equity,
        settings.initial_balance,
        result.trades,
        bars["close"].to_numpy(),
        3600.0,
        result.metrics["fees_paid"],
    )
    assert by_datetimes == result.metrics
    assert result_hash(result.trades, result.metrics) == result.result_hash
