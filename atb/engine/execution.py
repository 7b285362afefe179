"""How the decision path's orders meet a market: one interface for every mode.

The decision path (decision.py) decides *what* to trade; an `Execution` decides *how* an
order becomes a fill, and the paper/live loop drives a session only through it:

- `SimulatedExecution` (here): the backtest's fill model. Orders created on a bar's close
  fill at the next bar's open ± slippage, fee on notional, stops at their level (worst
  case). Paper trading is the same thing with `paper_…` ids (live/simulated.py).
- `ExchangeExecution` (live/exchange_execution.py): market orders through the exchange
  port, sent on the bar's close; fills, prices and fees are the exchange's.

Sizing (`OrderBook.entry_qty`), stop/take levels and fill booking (`book_entry`,
`book_exit`) are the decision path's and written once; an execution only chooses the
price, the quantity it can trade and the moment, then books through them. The design is
nautilus_trader's execution clients / freqtrade's dry run in the exchange layer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from atb.engine.fills import FillModel
from atb.engine.inputs import Bar
from atb.engine.orders import Order, OrderReason
from atb.engine.portfolio import Portfolio, Position, Trade
from atb.engine.step import Fill, Step
from atb.logging.events import log_risk_event

_new = tuple.__new__  # a Fill without NamedTuple's Python-level __new__: once per fill


class OrderBook(Protocol):
    """What an execution may use of the decision path: its account and its booking."""

    portfolio: Portfolio
    fill_model: FillModel
    log_orders: bool
    pending: list[Order]

    def new_order(self, time: datetime, side: int, kind: str, reason: OrderReason) -> Order: ...

    def entry_qty(self, order: Order, price: float) -> float: ...

    def book_entry(self, order: Order, fill: Fill, step: Step) -> Position: ...

    def book_exit(self, order: Order, fill: Fill, step: Step) -> Trade: ...

    def reject(self, order: Order, note: str) -> None: ...

    def fill_pending(self, bar: Bar, step: Step) -> None: ...

    def cancel_pending(self, note: str) -> list[Order]: ...


@dataclass(frozen=True)
class Orphan:
    """An order an earlier session of this run's key left `pending` (it died, or stopped
    with the order unconfirmed): looked up or cancelled at start, never left pending."""

    run_id: str
    order_no: int
    client_order_id: str | None
    """As the dead session's state remembers it (live orders); None when only the row
    survived."""
    side: int
    kind: str
    reason: str
    size: float = 0.0
    stop_loss: float | None = None
    take_profit: float | None = None


@dataclass(frozen=True)
class Settlement:
    """What came of an orphan: the final status and note of its row, and extra values."""

    status: str  # filled | cancelled
    outcome: str  # the order_reconciled event's outcome: cancelled | not_filled | filled
    note: str
    values: dict[str, Any] = field(default_factory=dict)
    """Extra columns of its row: the fill's qty, price and exchange order id."""
    booked: bool = False
    client_order_id: str | None = None


class Execution(ABC):
    """See the module docstring. Bound to one decision path (`bind`) before use."""

    books: OrderBook
    on_change: Callable[[list[Order]], None] | None = None
    """Persist these orders now (set by a session's recording; executions whose orders
    change outside a bar call it)."""

    def bind(self, books: OrderBook) -> None:
        self.books = books

    # -- called by the decision path --------------------------------------------------
    def accept(self, order: Order) -> None:
        """A new order: the place to give it the ids this execution names it by."""
        return None  # optional hook

    @abstractmethod
    def entry(self, order: Order, bar: Bar, step: Step) -> None:
        """Execute an entry (no position is open)."""

    @abstractmethod
    def exit(self, order: Order, bar: Bar, reference: float, step: Step) -> None:
        """Execute an exit of the open position at (about) `reference`."""

    def settled(self, order: Order) -> None:
        """An order reached a final status (filled or rejected)."""
        return None  # optional hook

    def order_ids(self, order: Order) -> dict[str, Any]:
        """How an order is named in its events."""
        return {"order_id": order.id}

    def order_level(self, order: Order) -> str:
        return "INFO"

    # -- called by the paper/live session ---------------------------------------------
    def starting_cash(self, configured: float) -> float:
        """Cash a fresh session starts with."""
        return configured

    def check_holdings(self) -> None:
        """Compare the books with what the market says is held."""
        return None  # optional hook

    def submit(self, bar: Bar, step: Step) -> None:
        """The orders this bar's decision created; simulated ones wait for the next open."""
        return None  # optional hook

    def reconcile(self) -> list[Order]:
        """Settle orders whose outcome is still unknown; return those that settled."""
        return []

    @property
    def blocked(self) -> bool:
        """True while a new decision could duplicate an order of unknown outcome."""
        return False

    @property
    def in_flight(self) -> list[dict[str, Any]]:
        """Orders sent and not settled, as the session state remembers them."""
        return []

    @abstractmethod
    def finish(self) -> list[Order]:
        """The session ends: settle what cannot outlive it; return the orders changed."""

    @abstractmethod
    def settle_orphan(self, orphan: Orphan, *, book: bool, run_id: str) -> Settlement:
        """Decide an earlier session's pending order (this is run `run_id`); `book`: this
        session took over that session's books, so a fill not yet in them is booked here."""


class SimulatedExecution(Execution):
    """The fill model: next bar's open ± slippage, fee on notional (fills.py)."""

    def entry(self, order: Order, bar: Bar, step: Step) -> None:
        books = self.books
        price = books.fill_model.price(bar.open, order.side)
        qty = books.entry_qty(order, price)
        if qty <= 0:
            books.reject(order, "no balance to size the order")
            if books.log_orders:
                log_risk_event(
                    "insufficient_balance",
                    level="WARNING",
                    **self.order_ids(order),
                    time=bar.time.isoformat(),
                    cash=books.portfolio.cash,
                    size=order.size,
                    price=price,
                    reason="trade refused: no balance to size the order",
                )
            return
        fee = books.fill_model.cost(qty, price)
        books.book_entry(order, _new(Fill, (bar.time, bar.index, qty, price, fee)), step)

    def exit(self, order: Order, bar: Bar, reference: float, step: Step) -> None:
        books = self.books
        pos = books.portfolio.position
        assert pos is not None
        price = books.fill_model.price(reference, order.side)
        fee = books.fill_model.cost(pos.qty, price)
        books.book_exit(order, _new(Fill, (bar.time, bar.index, pos.qty, price, fee)), step)

    def finish(self) -> list[Order]:
        # Orders waiting for the next open cannot fill once the session is gone.
        return self.books.cancel_pending("session stopped before the next bar")

    def settle_orphan(self, orphan: Orphan, *, book: bool, run_id: str) -> Settlement:
        note = (
            f"cancelled at {'resume' if book else 'start'} by run {run_id}: the session "
            "ended (no clean stop) before the order's next bar"
        )
        return Settlement("cancelled", "cancelled", note)
