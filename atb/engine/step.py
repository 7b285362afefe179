"""What one bar of the decision path produced: its state, fills, trades and decision."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from atb.engine.orders import Order
from atb.engine.portfolio import Trade


class DecisionRecord(NamedTuple):
    """One non-HOLD signal and what was done about it (the `decisions` table)."""

    bar: int
    time: datetime
    direction: int
    confidence: float | None
    action: str
    size: float
    reason: str | None
    price: float


@dataclass(slots=True)
class Step:
    """What one `on_bar` did; `cash`/`qty`/`balance` are the state after the bar."""

    equity: float
    cash: float
    qty: float
    balance: float
    # No default factories: the lists are passed in, half the cost of building a Step,
    # which happens once per stepped bar.
    fills: list[Order]
    trades: list[Trade]
    decision: DecisionRecord | None = None


class Fill(NamedTuple):
    """How an execution filled an order: when, on which bar, how much, at what price, and
    the fee in quote currency."""

    when: datetime
    bar: int
    qty: float
    price: float
    fee: float


def empty_step() -> Step:
    return Step(0.0, 0.0, 0.0, 0.0, [], [])
