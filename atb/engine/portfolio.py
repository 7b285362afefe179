"""Cash, the open position and closed trades: the single source of account state.

One net position per symbol (long or short). Cash moves on every fill, so
equity = cash + signed qty × price holds at any price, for longs and shorts alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


@dataclass(slots=True)
class Position:
    id: int
    side: int  # +1 long, -1 short
    qty: float
    entry_time: datetime
    entry_price: float
    entry_fee: float
    entry_bar: int
    stop_price: float | None = None
    take_price: float | None = None


class Trade(NamedTuple):
    """A closed round trip; pnl is net of both fees."""

    id: int
    position_id: int
    side: int
    qty: float
    entry_time: datetime
    entry_price: float
    exit_time: datetime
    exit_price: float
    fees: float
    pnl: float
    return_pct: float
    exit_reason: str
    bars_held: int

    @property
    def duration_s(self) -> float:
        return (self.exit_time - self.entry_time).total_seconds()


_new = tuple.__new__


class Portfolio:
    def __init__(self, initial_balance: float) -> None:
        self.initial_balance = initial_balance
        self.cash = initial_balance
        self.balance = initial_balance
        """Realized: initial + net pnl of closed trades (unchanged while a position is open)."""
        self.position: Position | None = None
        self.positions: list[Position] = []
        self.trades: list[Trade] = []
        self.fees_paid = 0.0
        self._next_position = 1

    @property
    def side(self) -> int:
        return 0 if self.position is None else self.position.side

    @property
    def signed_qty(self) -> float:
        return 0.0 if self.position is None else self.position.side * self.position.qty

    def equity(self, price: float) -> float:
        return self.cash + self.signed_qty * price

    def open(
        self, side: int, qty: float, price: float, fee: float, time: datetime, bar: int
    ) -> Position:
        if self.position is not None:
            raise RuntimeError("a position is already open; close it first")
        self.cash -= side * qty * price + fee
        self.fees_paid += fee
        self.position = Position(self._next_position, side, qty, time, price, fee, bar)
        self._next_position += 1
        self.positions.append(self.position)
        return self.position

    def adopt(self, position: Position, cash: float, balance: float) -> None:
        """Take over an open position (and the cash beside it) from a resumed session."""
        if self.position is not None:
            raise RuntimeError("a position is already open; close it first")
        self.cash, self.balance = cash, balance
        self.position = position
        self.positions.append(position)
        self._next_position = max(self._next_position, position.id + 1)

    def close(self, price: float, fee: float, time: datetime, bar: int, reason: str) -> Trade:
        pos = self.position
        if pos is None:
            raise RuntimeError("no open position to close")
        self.cash += pos.side * pos.qty * price - fee
        self.fees_paid += fee
        pnl = pos.side * (price - pos.entry_price) * pos.qty - pos.entry_fee - fee
        # tuple.__new__ skips NamedTuple's Python-level __new__: once per trade
        trade = _new(
            Trade,
            (
                len(self.trades) + 1,
                pos.id,
                pos.side,
                pos.qty,
                pos.entry_time,
                pos.entry_price,
                time,
                price,
                pos.entry_fee + fee,
                pnl,
                pnl / (pos.entry_price * pos.qty),
                reason,
                bar - pos.entry_bar,
            ),
        )
        self.trades.append(trade)
        self.balance += pnl
        self.position = None
        return trade
