"""A session's account: the portfolio plus what a session tracks beside it (its starting
balance, peak and last equity, the last bar it processed), and the state snapshot that
carries all of it across a restart (JSON in runs.metrics["state"])."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd

from atb.engine.portfolio import Portfolio, Position


def iso(value: pd.Timestamp | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def utc(value: Any) -> datetime | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.to_pydatetime()


@dataclass
class SessionState:
    """What a session must remember across a restart."""

    cash: float
    balance: float
    initial_balance: float
    peak_equity: float
    last_bar: datetime | None = None
    position: dict[str, Any] | None = None
    inflight: list[dict[str, Any]] = field(default_factory=list)
    """Live orders sent but not settled: order_no, client_order_id, side, kind, reason, ..."""

    def to_json(self) -> dict[str, Any]:
        return {
            "cash": self.cash, "balance": self.balance, "initial_balance": self.initial_balance,
            "peak_equity": self.peak_equity, "last_bar": iso(self.last_bar),
            "position": self.position, "inflight": list(self.inflight),
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionState:
        return cls(
            cash=float(data["cash"]), balance=float(data["balance"]),
            initial_balance=float(data.get("initial_balance", data["balance"])),
            peak_equity=float(data.get("peak_equity", data["balance"])),
            last_bar=utc(data.get("last_bar")), position=data.get("position"),
            inflight=list(data.get("inflight") or []),
        )  # fmt: skip


@dataclass
class PreviousSession:
    run_id: str
    status: str
    state: SessionState


def position_json(pos: Position) -> dict[str, Any]:
    return {
        "side": pos.side, "qty": pos.qty, "entry_time": pos.entry_time.isoformat(),
        "entry_price": pos.entry_price, "entry_fee": pos.entry_fee,
        "stop_price": pos.stop_price, "take_price": pos.take_price,
    }  # fmt: skip


def position_from_json(data: dict[str, Any], bars_since: Callable[[datetime], int]) -> Position:
    when = utc(data["entry_time"])
    assert when is not None
    return Position(
        id=1,
        side=int(data["side"]),
        qty=float(data["qty"]),
        entry_time=when,
        entry_price=float(data["entry_price"]),
        entry_fee=float(data.get("entry_fee") or 0.0),
        entry_bar=bars_since(when),
        stop_price=data.get("stop_price"),
        take_price=data.get("take_price"),
    )


class SessionAccount:
    def __init__(self, initial_balance: float) -> None:
        self.portfolio = Portfolio(initial_balance)
        self.initial_balance = initial_balance
        self.peak_equity = initial_balance
        self.last_equity = initial_balance
        self.last_bar: pd.Timestamp | None = None
        self.bar_index = 0
        """Bars processed by this session."""

    def set_cash(self, cash: float) -> None:
        """A fresh session's starting cash (live: what the exchange really holds)."""
        p = self.portfolio
        p.cash = p.balance = p.initial_balance = cash
        self.initial_balance = self.peak_equity = self.last_equity = cash

    def restore(self, state: SessionState, bars_since: Callable[[datetime], int]) -> None:
        """Continue from a previous session's snapshot."""
        p = self.portfolio
        p.initial_balance = self.initial_balance = state.initial_balance
        p.cash, p.balance = state.cash, state.balance
        self.peak_equity = state.peak_equity
        self.last_bar = pd.Timestamp(state.last_bar) if state.last_bar is not None else None
        if state.position:
            p.adopt(position_from_json(state.position, bars_since), state.cash, state.balance)
        self.last_equity = (
            p.balance if p.position is None else (p.cash + p.signed_qty * p.position.entry_price)
        )

    def mark(self, close: float) -> tuple[float, float]:
        """Mark to a bar's close: (equity, drawdown from the peak)."""
        equity = self.portfolio.equity(close)
        self.last_equity = equity
        self.peak_equity = max(self.peak_equity, equity)
        drawdown = 1.0 - equity / self.peak_equity if self.peak_equity > 0 else 0.0
        return equity, drawdown

    def state(self, in_flight: list[dict[str, Any]]) -> SessionState:
        p = self.portfolio
        return SessionState(
            cash=p.cash,
            balance=p.balance,
            initial_balance=self.initial_balance,
            peak_equity=self.peak_equity,
            last_bar=None if self.last_bar is None else self.last_bar.to_pydatetime(),
            position=position_json(p.position) if p.position is not None else None,
            inflight=in_flight,
        )

    def figures(self) -> dict[str, Any]:
        """The account part of the run's metrics."""
        p = self.portfolio
        return {
            "bars": self.bar_index,
            "num_trades": len(p.trades),
            "initial_balance": self.initial_balance,
            "balance": p.balance,
            "cash": p.cash,
            "final_equity": self.last_equity,
            "total_return": self.last_equity / self.initial_balance - 1.0,
            "fees_paid": p.fees_paid,
            "max_drawdown_seen": 1.0 - self.last_equity / self.peak_equity
            if self.peak_equity > 0
            else 0.0,
        }
