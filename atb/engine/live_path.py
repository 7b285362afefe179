"""The shared decision path, as paper and live sessions use it.

Paper is the backtest's `DecisionPath` unchanged (orders fill at the next bar's open ±
slippage, fee on notional, worst-case stops), with `paper_…` order ids in its events.

Live subclasses the two execution points only (`_execute_entry`, `_execute_exit`): the
strategy → risk → order logic is the backtest's, but fills come from the exchange's
answer to a market order (its price, quantity and fee). Orders are sent as soon as the
decision is taken on a bar's close, not at the next bar's open, because in live trading
"the next open" is now. Stops are software stops: a closed bar whose low/high touched the
level triggers a market exit at the next poll.

Every live order is announced before it is sent (`on_submit`, which the engine persists
with its client order id) and settled after (`on_settle`), so a process killed between
the two can be reconciled by the next session from the exchange's own record.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from atb.engine.decision import DecisionPath, Step
from atb.engine.fills import FillModel
from atb.engine.inputs import Bar
from atb.engine.orders import Order
from atb.engine.portfolio import Portfolio
from atb.engine.risk import RiskSettings
from atb.exchange.base import ExchangeUnavailable, OrderExecutor, OrderRejected, OrderResult
from atb.health import metrics as _metrics
from atb.logging.events import log_order_event


def paper_order_id(run_id: str, order_no: int) -> str:
    return f"paper_{run_id[:12]}_{order_no}"


def client_order_id(run_id: str, order_no: int) -> str:
    """Deterministic per (session, order): at most 36 chars of [A-Za-z0-9-] (Binance's rule)."""
    return f"atb-{run_id[:16]}-{order_no}"


class PaperDecisionPath(DecisionPath):
    """Simulated fills; only the events learn the `paper_…` id the records store."""

    def __init__(
        self,
        portfolio: Portfolio,
        fills: FillModel,
        risk: RiskSettings,
        *,
        run_id: str,
        log_orders: bool = True,
    ) -> None:
        super().__init__(portfolio, fills, risk, log_orders=log_orders)
        self.run_id = run_id

    def _order_ids(self, order: Order) -> dict[str, Any]:
        return {"order_id": paper_order_id(self.run_id, order.id), "order_no": order.id}

    def _order_level(self, order: Order) -> str:
        return "WARNING" if order.status == "rejected" else "INFO"


class LiveDecisionPath(DecisionPath):
    """Fills from the exchange; see the module docstring."""

    def __init__(
        self,
        portfolio: Portfolio,
        fills: FillModel,
        risk: RiskSettings,
        executor: OrderExecutor,
        *,
        run_id: str,
        on_submit: Callable[[Order, str], None] | None = None,
        on_settle: Callable[[Order], None] | None = None,
        log_orders: bool = True,
    ) -> None:
        super().__init__(portfolio, fills, risk, log_orders=log_orders)
        self.executor = executor
        self.run_id = run_id
        self.on_submit = on_submit
        self.on_settle = on_settle
        self.client_ids: dict[int, str] = {}
        self.exchange_ids: dict[int, str] = {}
        self.error_codes: dict[int, str] = {}
        """The exchange's error code of each rejected order (orders.error_code)."""
        self.unconfirmed: list[tuple[Order, int]] = []
        """Orders sent whose outcome the exchange could not confirm, with their bar index."""

    # -- driving ------------------------------------------------------------------------
    def execute_pending(self, bar: Bar, step: Step) -> None:
        """Send the orders this bar's decision created, now (see the module docstring)."""
        if self.pending:
            self._fill_pending(bar, step)

    def reconcile(self) -> list[Order]:
        """Ask the exchange about unconfirmed orders; settle those it knows or denies.

        Raises ExchangeUnavailable when it still cannot answer (the caller retries on its
        next iteration and takes no new decision meanwhile)."""
        settled: list[Order] = []
        still: list[tuple[Order, int]] = []
        for order, bar_index in self.unconfirmed:
            found = self.executor.find_order(self.client_ids[order.id])
            if found is None:
                order.status = "cancelled"
                order.note = "never reached the exchange (unconfirmed, not found by client id)"
                self._settled(order)
                settled.append(order)
            elif found.status == "filled" and found.qty > 0:
                self._apply(order, found, bar_index, Step(0.0, 0.0, 0.0, 0.0))
                settled.append(order)
            else:
                still.append((order, bar_index))
        self.unconfirmed = still
        return settled

    # -- the two execution points -------------------------------------------------------
    def _execute_entry(self, order: Order, bar: Bar, step: Step) -> None:
        p = self.portfolio
        if p.position is not None:
            super()._execute_entry(order, bar, step)  # records the local rejection
            return
        try:
            price = self.executor.last_price()
        except ExchangeUnavailable as exc:
            self._reject_locally(order, f"no price to size the order: {exc}")
            return
        budget = order.size * p.cash
        qty = self.executor.amount_to_precision(
            budget / (price * (1.0 + self.fill_model.fee)) if budget > 0 else 0.0
        )
        minimum = self.executor.min_notional()
        if qty <= 0 or qty * price < minimum:
            self._reject_locally(
                order,
                f"size {qty:g} at {price:g} is below the exchange minimum (notional {minimum:g})",
            )
            return
        self._send(order, qty, bar, step)

    def _execute_exit(self, order: Order, bar: Bar, reference: float, step: Step) -> None:
        pos = self.portfolio.position
        assert pos is not None
        qty = self.executor.amount_to_precision(pos.qty)
        if qty <= 0:
            self._reject_locally(order, f"position {pos.qty:g} is below the exchange's step")
            return
        self._send(order, qty, bar, step)

    # -- internals ----------------------------------------------------------------------
    def _send(self, order: Order, qty: float, bar: Bar, step: Step) -> None:
        cid = client_order_id(self.run_id, order.id)
        self.client_ids[order.id] = cid
        order.qty = qty
        order.note = f"client_order_id={cid}"
        if self.on_submit is not None:
            self.on_submit(order, cid)  # persisted before the request leaves
        try:
            result = self.executor.market_order(order.side, qty, cid)
        except OrderRejected as exc:
            order.status = "rejected"
            if exc.code:
                self.error_codes[order.id] = str(exc.code)
            order.note = (
                f"{exc.kind} code={exc.code}: {exc.reason}"
                if exc.code
                else (f"{exc.kind}: {exc.reason}")
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
            self._settled(order)
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
        p = self.portfolio
        when = (
            datetime.fromtimestamp(result.timestamp_ms / 1000, tz=UTC)
            if result.timestamp_ms
            else datetime.now(UTC)
        )
        fee = result.fee_in_quote
        if fee == 0.0:  # no fee reported (e.g. looked up later): the configured rate
            fee = self.fill_model.cost(result.qty, result.price)
        if result.exchange_order_id:
            self.exchange_ids[order.id] = result.exchange_order_id
        if order.kind == "entry":
            if p.position is not None:
                raise RuntimeError("exchange filled an entry while a position is open")
            # Binance charges a buy's fee in the base asset: the position is what arrived,
            # and cash moves by exactly qty × price (net qty × price + fee in quote).
            pos = p.open(order.side, result.net_qty, result.price, fee, when, bar_index)
            if order.stop_loss is not None:
                pos.stop_price = result.price * (1.0 - pos.side * order.stop_loss)
            if order.take_profit is not None:
                pos.take_price = result.price * (1.0 + pos.side * order.take_profit)
            self._book(order, when, result.net_qty, result.price, fee, pos.id)
        else:
            held = p.position
            if held is None:
                raise RuntimeError("exchange filled an exit with no open position")
            if 0 < result.qty < held.qty:
                # Sold what the exchange's step allows; the dust left on the account is
                # worth less than one step and is no longer tracked as a position.
                held.qty = result.qty
            trade = p.close(result.price, fee, when, bar_index, order.reason)
            self._book(order, when, trade.qty, result.price, fee, held.id)
            step.trades.append(trade)
        step.fills.append(order)
        self._settled(order)

    def _book(
        self, order: Order, when: datetime, qty: float, price: float, fee: float, position_id: int
    ) -> None:
        order.status = "filled"
        order.filled_at = when
        order.qty, order.price, order.fee, order.position_id = qty, price, fee, position_id
        order.note = f"client_order_id={self.client_ids.get(order.id)}"
        if self.log_orders:
            log_order_event(
                "order_filled",
                order_no=order.id,
                client_order_id=self.client_ids.get(order.id),
                exchange_order_id=self.exchange_ids.get(order.id),
                side=order.side_name,
                kind=order.kind,
                reason=order.reason,
                qty=qty,
                price=price,
                fee=fee,
                time=when.isoformat(),
            )

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
        self._settled(order)

    def _settled(self, order: Order) -> None:
        _metrics.record_order(order.status)
        if self.on_settle is not None:
            self.on_settle(order)
