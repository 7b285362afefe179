"""`log_risk_event` wherever risk acts (issue 15: neither engine ever called it)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from atb.engine.decision import DecisionPath
from atb.engine.fills import FillModel
from atb.engine.inputs import Bar, Signal
from atb.engine.portfolio import Portfolio
from atb.engine.risk import RiskSettings
from atb.engine.risk_limits import RiskLimits
from atb.logging.hooks import add_record_listener
from atb.strategies.base import BUY

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def risk_events() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    remove = add_record_listener(
        lambda item: seen.append(item) if item["event_type"] == "risk_event" else None
    )
    yield seen
    remove()


def bar(i: int, o: float, h: float, low: float, c: float) -> Bar:
    return Bar(i, T0 + timedelta(hours=i), o, h, low, c, 1.0)


def path(cash: float = 10_000.0, **risk: Any) -> DecisionPath:
    return DecisionPath(Portfolio(cash), FillModel(0.0, 0.0), RiskSettings(**risk), log_orders=True)


def names(events: list[dict[str, Any]]) -> list[str]:
    return [e["name"] for e in events]


def test_size_capped_by_max_position(risk_events: list[dict[str, Any]]) -> None:
    p = path(max_position=0.25)
    p.on_bar(bar(0, 100, 100, 100, 100), Signal(BUY, size=0.9))
    (event,) = risk_events
    assert event["name"] == "position_capped"
    assert event["fields"]["requested"] == 0.9 and event["fields"]["size"] == 0.25


def test_signal_sized_to_zero(risk_events: list[dict[str, Any]]) -> None:
    p = path()
    p.on_bar(bar(0, 100, 100, 100, 100), Signal(BUY, size=0.0, reason="confidence 0.1 < 0.3"))
    (event,) = risk_events
    assert event["name"] == "signal_sized_to_zero"
    assert event["fields"]["reason"] == "confidence 0.1 < 0.3"


def test_stop_loss_and_take_profit_triggered(risk_events: list[dict[str, Any]]) -> None:
    p = path()
    p.on_bar(bar(0, 100, 100, 100, 100), Signal(BUY, size=0.5, stop_loss=0.05))
    p.on_bar(bar(1, 100, 101, 99, 100))  # entry fills at 100, stop at 95
    p.on_bar(bar(2, 99, 99, 90, 91))  # through the stop
    assert names(risk_events) == ["stop_loss_triggered"]
    assert risk_events[0]["level"] == "WARNING"
    assert risk_events[0]["fields"]["trigger_price"] == pytest.approx(95.0)
    p.on_bar(bar(3, 100, 100, 100, 100), Signal(BUY, size=0.5, take_profit=0.05))
    p.on_bar(bar(4, 100, 101, 99, 100))
    p.on_bar(bar(5, 101, 110, 100, 108))
    assert names(risk_events) == ["stop_loss_triggered", "take_profit_triggered"]


def test_trade_refused_for_insufficient_balance(risk_events: list[dict[str, Any]]) -> None:
    p = path(cash=0.0)
    p.on_bar(bar(0, 100, 100, 100, 100), Signal(BUY, size=0.5))
    p.on_bar(bar(1, 100, 100, 100, 100))
    assert names(risk_events) == ["insufficient_balance"]


def test_backtests_stay_quiet_unless_asked(risk_events: list[dict[str, Any]]) -> None:
    # backtest.log_orders=false (the default): decisions are in the decisions table
    p = DecisionPath(
        Portfolio(1.0), FillModel(0.0, 0.0), RiskSettings(max_position=0.1), log_orders=False
    )
    p.on_bar(bar(0, 100, 100, 100, 100), Signal(BUY, size=0.9))
    assert risk_events == []


def test_drawdown_and_daily_loss_limits(risk_events: list[dict[str, Any]]) -> None:
    limits = RiskLimits(max_drawdown=0.1, max_daily_loss=0.05)
    limits.check(T0, 10_000, 10_000)
    limits.check(T0 + timedelta(hours=1), 9_400, 10_000)  # -6 % today
    limits.check(T0 + timedelta(hours=2), 8_900, 10_000)  # -11 % from peak
    limits.check(T0 + timedelta(hours=3), 8_800, 10_000)  # still breached: no repeat
    limits.check(T0 + timedelta(hours=4), 9_500, 10_000)
    assert names(risk_events) == [
        "daily_loss_limit_reached", "max_drawdown_breach", "drawdown_recovered",
    ]  # fmt: skip
    assert all(e["level"] == "ERROR" for e in risk_events[:2])
