"""Live trading's execution: market orders through the exchange port.

The strategy → risk → order logic is the backtest's (decision.py); fills come from the
exchange's answer to a market order (its price, quantity and fee), booked through the
decision path's shared booking. Orders are sent as soon as the decision is taken on a
bar's close (`submit`), not at the next bar's open, because in live trading "the next open"
is now. Stops are software stops: a closed bar whose low/high touched the level triggers
a market exit at the next poll.

Every order is announced before it is sent (`on_change`, which the session persists with
its client order id) and again when it settles, so a process killed between the two can be
reconciled by the next session from the exchange's own record (`settle_orphan`). An order
the exchange could not confirm blocks new decisions until `reconcile` settles it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from atb.engine.execution import Execution, Orphan, Settlement
from atb.engine.inputs import Bar
from atb.engine.orders import Order
from atb.engine.step import Fill, Step, empty_step
from atb.exchange.base import ExchangeUnavailable, OrderExecutor, OrderRejected, OrderResult
from atb.health import metrics as _metrics
from atb.logging.events import log_engine_event, log_order_event


def client_order_id(run_id: str, order_no: int) -> str:
    """Deterministic per (session, order): at most 36 chars of [A-Za-z0-9-] (Binance's rule)."""
    return f"atb-{run_id[:16]}-{order_no}"


class ExchangeTimer:
    """Time spent waiting on the exchange, so loop overhead can be told apart from it."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


class TimedExecutor:
    """An `OrderExecutor` whose network calls count into an `ExchangeTimer`."""

    def __init__(self, inner: OrderExecutor, timer: ExchangeTimer) -> None:
        self.market_order = timer.wrap(inner.market_order)
        self.find_order = timer.wrap(inner.find_order)
        self.balances = timer.wrap(inner.balances)
        self.last_price = timer.wrap(inner.last_price)
        self.amount_to_precision = inner.amount_to_precision
        self.min_notional = inner.min_notional


class ExchangeExecution(Execution):
    """See the module docstring."""

    def __init__(self, executor: OrderExecutor | TimedExecutor, run_id: str) -> None:
        self.executor = executor
        self.run_id = run_id
        self.unconfirmed: list[tuple[Order, int]] = []
        """Orders sent whose outcome the exchange could not confirm, with their bar index."""
        self._in_flight: dict[int, dict[str, Any]] = {}

    # -- the session's side -------------------------------------------------------------
    def starting_cash(self, configured: float) -> float:
        _, quote_free = self.executor.balances()
        if quote_free < configured:
            log_engine_event(
                "balance_adjustment",
                level="WARNING",
                reason="the exchange holds less quote currency than live.initial_balance",
                configured=configured,
                exchange_free=quote_free,
                balance=quote_free,
            )
        # Never trade more than the exchange holds, nor more than the user allotted.
        return min(configured, quote_free)

    def check_holdings(self) -> None:
        """The exchange's base balance must cover the position we believe we hold."""
        portfolio = self.books.portfolio
        pos = portfolio.position
        base_total, _ = self.executor.balances()
        if pos is None or base_total + 1e-12 >= pos.qty * 0.999:
            return
        log_engine_event(
            "position_mismatch",
            level="ERROR",
            recorded_qty=pos.qty,
            exchange_qty=base_total,
            note="the exchange holds less than the recorded position: trading on with what "
            "it holds",
        )
        if base_total <= 0:
            portfolio.position = None
            portfolio.cash = portfolio.balance
        else:
            pos.qty = base_total
        log_engine_event(
            "balance_adjustment",
            level="WARNING",
            reason="position reconciled against the exchange's base balance",
            recorded_qty=pos.qty if base_total > 0 else 0.0,
            exchange_qty=base_total,
        )

    def submit(self, bar: Bar, step: Step) -> None:
        """Send the orders this bar's decision created, now (see the module docstring)."""
        if self.books.pending:
            self.books.fill_pending(bar, step)

    def reconcile(self) -> list[Order]:
        """Ask the exchange about unconfirmed orders; settle those it knows or denies.

        Raises ExchangeUnavailable when it still cannot answer (the loop retries on its next
        iteration and takes no new decision meanwhile)."""
        settled: list[Order] = []
        still: list[tuple[Order, int]] = []
        for order, bar_index in self.unconfirmed:
            assert order.client_order_id is not None
            found = self.executor.find_order(order.client_order_id)
            if found is None:
                order.status = "cancelled"
                order.note = "never reached the exchange (unconfirmed, not found by client id)"
                self.settled(order)
                settled.append(order)
            elif found.status == "filled" and found.qty > 0:
                self._apply(order, found, bar_index, empty_step())
                settled.append(order)
            else:
                still.append((order, bar_index))
        self.unconfirmed = still
        return settled

    @property
    def blocked(self) -> bool:
        return bool(self.unconfirmed)

    @property
    def in_flight(self) -> list[dict[str, Any]]:
        return list(self._in_flight.values())

    def finish(self) -> list[Order]:
        # Unconfirmed orders stay pending with their client id in the state's in-flight
        # list: the next session looks them up on the exchange.
        return []

    def settle_orphan(self, orphan: Orphan, *, book: bool, run_id: str) -> Settlement:
        cid = orphan.client_order_id or client_order_id(orphan.run_id, orphan.order_no)
        found = self.executor.find_order(cid)
        if found is None or found.status != "filled" or found.qty <= 0:
            note = f"client_order_id={cid}; never filled on the exchange (checked at resume)"
            return Settlement("cancelled", "not_filled", note, client_order_id=cid)
        values = {
            "qty": found.qty,
            "price": found.price,
            "exchange_order_id": found.exchange_order_id,
        }
        held = self.books.portfolio.position is not None
        if not book or (orphan.kind == "exit") != held:
            why = (
                "already in the resumed state"
                if book
                else "the session did not take over those books (live.resume=false)"
            )
            note = f"client_order_id={cid}; filled on the exchange, {why} (not booked again)"
            return Settlement("filled", "filled", note, values, client_order_id=cid)
        order = self.books.new_order(
            datetime.now(UTC),
            orphan.side,
            orphan.kind,
            orphan.reason,  # type: ignore[arg-type]
        )
        order.size = orphan.size
        order.stop_loss, order.take_profit = orphan.stop_loss, orphan.take_profit
        order.client_order_id = cid
        self._apply(order, found, 0, empty_step())
        note = f"client_order_id={cid}; filled on the exchange, booked by run {run_id}"
        return Settlement("filled", "filled", note, values, booked=True, client_order_id=cid)

    # -- the decision path's side -------------------------------------------------------
    def order_ids(self, order: Order) -> dict[str, Any]:
        return {
            "order_no": order.id,
            "client_order_id": order.client_order_id,
            "exchange_order_id": order.exchange_order_id,
        }

    def entry(self, order: Order, bar: Bar, step: Step) -> None:
        try:
            price = self.executor.last_price()
        except ExchangeUnavailable as exc:
            self._reject_locally(order, f"no price to size the order: {exc}")
            return
        qty = self.executor.amount_to_precision(self.books.entry_qty(order, price))
        minimum = self.executor.min_notional()
        if qty <= 0 or qty * price < minimum:
            self._reject_locally(
                order,
                f"size {qty:g} at {price:g} is below the exchange minimum (notional {minimum:g})",
            )
            return
        self._send(order, qty, bar, step)

    def exit(self, order: Order, bar: Bar, reference: float, step: Step) -> None:
        pos = self.books.portfolio.position
        assert pos is not None
        qty = self.executor.amount_to_precision(pos.qty)
        if qty <= 0:
            self._reject_locally(order, f"position {pos.qty:g} is below the exchange's step")
            return
        self._send(order, qty, bar, step)

    def settled(self, order: Order) -> None:
        self._in_flight.pop(order.id, None)
        _metrics.record_order(order.status)
        self._changed(order)

    # -- internals ----------------------------------------------------------------------
    def _changed(self, order: Order) -> None:
        if self.on_change is not None:
            self.on_change([order])

    def _send(self, order: Order, qty: float, bar: Bar, step: Step) -> None:
        cid = client_order_id(self.run_id, order.id)
        order.client_order_id = cid
        order.qty = qty
        order.note = f"client_order_id={cid}"
        self._in_flight[order.id] = {
            "order_no": order.id, "client_order_id": cid, "side": order.side,
            "kind": order.kind, "reason": order.reason, "size": order.size,
            "stop_loss": order.stop_loss, "take_profit": order.take_profit,
            "created": order.created.isoformat(),
        }  # fmt: skip
        self._changed(order)  # persisted before the request leaves
        try:
            result = self.executor.market_order(order.side, qty, cid)
        except OrderRejected as exc:
            order.status = "rejected"
            order.error_code = str(exc.code) if exc.code else None
            order.note = (
                f"{exc.kind} code={exc.code}: {exc.reason}"
                if exc.code
                else f"{exc.kind}: {exc.reason}"
            )
            log_order_event(
                "order_rejected",
                level="WARNING",
                order_no=order.id,
                client_order_id=cid,
                side=order.side_name,
                kind=order.kind,
                qty=qty,
                reason=exc.reason,
                code=exc.code,
                error_kind=exc.kind,
                source="exchange",
            )
            _metrics.record_rejection(exc.kind)
            self.settled(order)
            return
        except ExchangeUnavailable as exc:
            order.note = f"client_order_id={cid}; unconfirmed: {exc}"
            self.unconfirmed.append((order, bar.index))
            log_order_event(
                "order_unconfirmed",
                level="ERROR",
                order_no=order.id,
                client_order_id=cid,
                error=str(exc)[:300],
            )
            return
        if result.status != "filled" or result.qty <= 0:
            self.unconfirmed.append((order, bar.index))
            return
        self._apply(order, result, bar.index, step)

    def _apply(self, order: Order, result: OrderResult, bar_index: int, step: Step) -> None:
        """Book an exchange fill into the portfolio, exactly once."""
        books = self.books
        when = (
            datetime.fromtimestamp(result.timestamp_ms / 1000, tz=UTC)
            if result.timestamp_ms
            else datetime.now(UTC)
        )
        fee = result.fee_in_quote
        if fee == 0.0:  # no fee reported (e.g. looked up later): the configured rate
            fee = books.fill_model.cost(result.qty, result.price)
        if result.exchange_order_id:
            order.exchange_order_id = result.exchange_order_id
        order.note = f"client_order_id={order.client_order_id}"
        if order.kind == "entry":
            if books.portfolio.position is not None:
                raise RuntimeError("exchange filled an entry while a position is open")
            # Binance charges a buy's fee in the base asset: the position is what arrived,
            # and cash moves by exactly qty × price (net qty × price + fee in quote).
            books.book_entry(order, Fill(when, bar_index, result.net_qty, result.price, fee), step)
            return
        if books.portfolio.position is None:
            raise RuntimeError("exchange filled an exit with no open position")
        books.book_exit(order, Fill(when, bar_index, result.qty, result.price, fee), step)

    def _reject_locally(self, order: Order, note: str) -> None:
        order.status = "rejected"
        order.note = note
        log_order_event(
            "order_rejected",
            level="WARNING",
            order_no=order.id,
            side=order.side_name,
            kind=order.kind,
            reason=note,
            source="risk",
        )
        _metrics.record_rejection("below_minimum")
        self.settled(order)
