"""Orders: what the decision path asks the market for, and what came of it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

OrderKind = Literal["entry", "exit"]
OrderStatus = Literal["pending", "filled", "rejected", "cancelled"]
OrderReason = Literal["signal", "stop_loss", "take_profit", "end_of_data"]


@dataclass(slots=True)
class Order:
    """A market order. Entries carry a size (fraction of balance), exits close the position.

    Signal orders are created on a bar's close and filled at the next bar's open; stop-loss,
    take-profit and end-of-data exits are created and filled on the bar that triggers them.
    """

    id: int
    created: datetime
    side: int  # +1 buy, -1 sell
    kind: OrderKind
    reason: OrderReason
    size: float = 0.0  # entries: fraction of balance
    stop_loss: float | None = None  # entries: fractions from the fill price
    take_profit: float | None = None
    status: OrderStatus = "pending"
    filled_at: datetime | None = None
    qty: float = 0.0
    price: float = 0.0
    fee: float = 0.0
    position_id: int | None = None
    note: str | None = None
    client_order_id: str | None = None
    """The id atb sends with a live order (looked up after a crash); None elsewhere."""
    exchange_order_id: str | None = None
    """The exchange's id of a live fill; paper orders carry a `paper_…` id here."""
    error_code: str | None = None
    """A rejection's exchange error code as ccxt reports it; None for local refusals."""

    @property
    def side_name(self) -> str:
        return "buy" if self.side > 0 else "sell"
