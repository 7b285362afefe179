"""Each metric computed by hand on a tiny account history."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from atb.engine.metrics import YEAR_S, compute_metrics
from atb.engine.portfolio import Trade

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def trade(pnl: float, hours: int) -> Trade:
    return Trade(
        1,
        1,
        1,
        1.0,
        T0,
        100.0,
        T0 + timedelta(hours=hours),
        100.0 + pnl,
        0.0,
        pnl,
        pnl / 100.0,
        "signal",
        hours,
    )


@pytest.fixture
def metrics() -> dict[str, object]:
    equity = np.array([11_000.0, 9_900.0, 12_000.0])
    trades = [trade(100, 2), trade(-50, 4), trade(30, 6)]
    # Quarterly bars: 4 periods a year, so 3 bars are 0.75 years.
    return compute_metrics(
        equity, 10_000.0, trades, np.array([100.0, 120.0, 150.0]), YEAR_S / 4, fees_paid=12.5
    )


def test_returns(metrics: dict[str, float]) -> None:
    assert metrics["total_return"] == pytest.approx(0.2)
    assert metrics["annualized_return"] == pytest.approx(1.2 ** (1 / 0.75) - 1)
    assert metrics["buy_and_hold_return"] == pytest.approx(0.5)
    assert metrics["final_equity"] == 12_000.0


def test_drawdown_and_calmar(metrics: dict[str, float]) -> None:
    assert metrics["max_drawdown"] == pytest.approx(0.1)  # 11000 -> 9900
    assert metrics["calmar"] == pytest.approx((1.2 ** (1 / 0.75) - 1) / 0.1)


def test_sharpe_and_sortino(metrics: dict[str, float]) -> None:
    r = [0.1, -0.1, 12_000 / 9_900 - 1]
    mean = sum(r) / 3
    std = math.sqrt(sum((x - mean) ** 2 for x in r) / 2)
    downside = math.sqrt((0.1**2) / 3)
    assert metrics["sharpe"] == pytest.approx(mean / std * 2)
    assert metrics["sortino"] == pytest.approx(mean / downside * 2)


def test_trade_statistics(metrics: dict[str, float]) -> None:
    assert metrics["num_trades"] == 3
    assert metrics["win_rate"] == pytest.approx(2 / 3)
    assert metrics["profit_factor"] == pytest.approx(130 / 50)
    assert metrics["expectancy"] == pytest.approx(80 / 3)
    assert metrics["fees_paid"] == 12.5
    assert metrics["avg_trade_duration_s"] == pytest.approx(4 * 3600)


def test_undefined_ratios_are_none_not_inf() -> None:
    m = compute_metrics(
        np.array([10_000.0, 10_000.0]), 10_000.0, [trade(5, 1)], np.array([1.0, 1.0]), 3600.0, 0.0
    )
    assert m["max_drawdown"] == 0.0
    assert m["calmar"] is None and m["sharpe"] is None and m["sortino"] is None
    assert m["profit_factor"] is None  # no losing trade
    none = compute_metrics(np.array([10_000.0]), 10_000.0, [], np.array([1.0]), 3600.0, 0.0)
    assert none["win_rate"] is None and none["expectancy"] is None
