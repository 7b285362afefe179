"""Hand-computed fills, fees, slippage, stop-loss/take-profit and sizing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from atb.engine.decision import DecisionPath
from atb.engine.fills import FillModel
from atb.engine.inputs import Bar, Signal
from atb.engine.portfolio import Portfolio
from atb.engine.risk import RiskSettings, decide

T0 = datetime(2024, 1, 1, tzinfo=UTC)
FEE, SLIP = 0.001, 0.0005


def bar(i: int, o: float, h: float, low: float, c: float) -> Bar:
    return Bar(i, T0 + timedelta(hours=i), o, h, low, c, 1.0)


def path(**risk: object) -> DecisionPath:
    return DecisionPath(
        Portfolio(10_000.0),
        FillModel(FEE, SLIP),
        RiskSettings(**risk),  # type: ignore[arg-type]
        log_orders=False,
    )


def test_round_trip_fills_at_next_open_with_fee_and_slippage() -> None:
    p = path()
    p.on_bar(bar(0, 100, 100, 100, 100), Signal(1, size=0.5))
    assert p.portfolio.position is None  # decided on the close, nothing filled yet
    step = p.on_bar(bar(1, 110, 125, 105, 120), Signal(-1))
    buy = 110 * (1 + SLIP)  # 110.055
    qty = 5_000 / (buy * (1 + FEE))  # half the balance buys notional + fee
    fee1 = qty * buy * FEE
    assert step.fills[0].price == pytest.approx(buy, rel=1e-12)
    assert step.fills[0].qty == pytest.approx(qty, rel=1e-12)
    assert p.portfolio.cash == pytest.approx(10_000 - qty * buy - fee1, rel=1e-12)
    assert p.portfolio.cash == pytest.approx(5_000, rel=1e-12)
    assert step.equity == pytest.approx(5_000 + qty * 120, rel=1e-12)

    step = p.on_bar(bar(2, 130, 131, 129, 130))
    sell = 130 * (1 - SLIP)  # 129.935
    fee2 = qty * sell * FEE
    (trade,) = step.trades
    assert trade.entry_time == T0 + timedelta(hours=1)
    assert trade.exit_time == T0 + timedelta(hours=2)
    assert trade.exit_price == pytest.approx(sell, rel=1e-12)
    assert trade.fees == pytest.approx(fee1 + fee2, rel=1e-12)
    assert trade.pnl == pytest.approx((sell - buy) * qty - fee1 - fee2, rel=1e-12)
    assert p.portfolio.cash == pytest.approx(10_000 + trade.pnl, rel=1e-12)
    assert p.portfolio.fees_paid == pytest.approx(fee1 + fee2, rel=1e-12)
    assert trade.exit_reason == "signal" and trade.bars_held == 1


def _open_long(sl: float | None, tp: float | None, **risk: object) -> tuple[DecisionPath, float]:
    p = path(**risk)
    p.on_bar(bar(0, 100, 100, 100, 100), Signal(1, 1.0, sl, tp))
    p.on_bar(bar(1, 100, 100, 100, 100))
    pos = p.portfolio.position
    assert pos is not None
    return p, pos.entry_price


def test_stop_loss_and_take_profit_same_bar_takes_the_worst_case() -> None:
    p, entry = _open_long(0.05, 0.05)
    sl, tp = entry * 0.95, entry * 1.05
    step = p.on_bar(bar(2, 100, tp + 1, sl - 1, 100))
    (trade,) = step.trades
    assert trade.exit_reason == "stop_loss"
    assert trade.exit_price == pytest.approx(sl * (1 - SLIP), rel=1e-12)


def test_take_profit_alone() -> None:
    p, entry = _open_long(0.05, 0.05)
    tp = entry * 1.05
    (trade,) = p.on_bar(bar(2, 100, tp + 1, 99, 100)).trades
    assert trade.exit_reason == "take_profit"
    assert trade.exit_price == pytest.approx(tp * (1 - SLIP), rel=1e-12)


def test_gap_through_the_stop_fills_at_the_open() -> None:
    p, _ = _open_long(0.05, None)
    (trade,) = p.on_bar(bar(2, 90, 91, 85, 88)).trades
    assert trade.exit_price == pytest.approx(90 * (1 - SLIP), rel=1e-12)


def test_stop_checked_on_the_entry_bar() -> None:
    p = path()
    p.on_bar(bar(0, 100, 100, 100, 100), Signal(1, 1.0, 0.02, None))
    step = p.on_bar(bar(1, 100, 101, 97, 100))
    assert [o.reason for o in step.fills] == ["signal", "stop_loss"]
    entry = 100 * (1 + SLIP)
    assert step.trades[0].exit_price == pytest.approx(entry * 0.98 * (1 - SLIP), rel=1e-12)


def test_short_stop_is_above_and_worst_case_too() -> None:
    p = path(allow_shorts=True)
    p.on_bar(bar(0, 100, 100, 100, 100), Signal(-1, 1.0, 0.05, 0.05))
    p.on_bar(bar(1, 100, 100, 100, 100))
    pos = p.portfolio.position
    assert pos is not None and pos.side == -1
    entry = 100 * (1 - SLIP)
    assert pos.entry_price == pytest.approx(entry)
    assert pos.stop_price == pytest.approx(entry * 1.05)
    assert pos.take_price == pytest.approx(entry * 0.95)
    (trade,) = p.on_bar(bar(2, 100, 110, 90, 100)).trades
    assert trade.exit_reason == "stop_loss"
    assert trade.exit_price == pytest.approx(entry * 1.05 * (1 + SLIP), rel=1e-12)
    assert trade.pnl < 0


def test_reverse_long_to_short_closes_then_opens() -> None:
    p = path(allow_shorts=True)
    p.on_bar(bar(0, 100, 100, 100, 100), Signal(1))
    p.on_bar(bar(1, 100, 100, 100, 100), Signal(-1))
    step = p.on_bar(bar(2, 100, 100, 100, 100))
    assert [(o.kind, o.side) for o in step.fills] == [("exit", -1), ("entry", -1)]
    assert p.portfolio.side == -1


@pytest.mark.parametrize(
    ("signal", "side", "risk", "action", "size", "reason"),
    [
        (Signal(1, 0.5), 0, {}, "open_long", 0.5, None),
        (
            Signal(1, 0.8),
            0,
            {"max_position": 0.25},
            "open_long",
            0.25,
            "capped at max_position=0.25",
        ),
        (Signal(1, 0.8), 0, {"position_size": 0.1}, "open_long", 0.1, None),
        (Signal(1, 0.0, reason="low confidence"), 0, {}, "none", 0.0, "low confidence"),
        (Signal(1, 0.0), 0, {}, "none", 0.0, "signal size is 0"),
        (Signal(1), 1, {}, "none", 0.0, "already long"),
        (Signal(-1), 0, {}, "none", 0.0, "shorts disabled (allow_shorts=false)"),
        (Signal(-1), 1, {}, "close_long", 0.0, None),
        (Signal(-1, 0.3), 1, {"allow_shorts": True}, "reverse_to_short", 0.3, None),
        (Signal(-1), -1, {"allow_shorts": True}, "none", 0.0, "already short"),
        (Signal(1, 0.4), -1, {"allow_shorts": True}, "reverse_to_long", 0.4, None),
    ],
)
def test_sizing_and_reasons(
    signal: Signal, side: int, risk: dict[str, object], action: str, size: float, reason: str | None
) -> None:
    d = decide(signal, side, RiskSettings(**risk))  # type: ignore[arg-type]
    assert (d.action, d.size, d.reason) == (action, pytest.approx(size), reason)


def test_zero_size_decision_is_recorded_with_its_reason() -> None:
    p = path()
    step = p.on_bar(bar(0, 100, 100, 100, 100), Signal(-1))
    assert step.decision is not None
    assert step.decision.action == "none" and step.decision.size == 0
    assert step.decision.reason == "shorts disabled (allow_shorts=false)"
    assert p.decisions == [step.decision] and not p.pending


def test_end_of_data_closes_and_cancels_pending() -> None:
    p = path()
    p.on_bar(bar(0, 100, 100, 100, 100), Signal(1))
    p.on_bar(bar(1, 100, 100, 100, 100), Signal(-1))
    step = p.finish(bar(1, 100, 100, 100, 100))
    assert step.trades[0].exit_reason == "end_of_data"
    assert step.trades[0].exit_price == pytest.approx(100 * (1 - SLIP))
    assert [o.status for o in p.orders] == ["filled", "cancelled", "filled"]
