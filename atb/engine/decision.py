"""The decision path, one bar at a time: the only place trading logic lives.

`DecisionPath.on_bar(bar, signal)` is called once per closed bar by every engine:

1. fill the orders created on the previous bar's close, at this bar's open;
2. check stop-loss / take-profit against this bar's high/low (worst case if both);
3. mark the account to this bar's close;
4. take the strategy's signal for this bar through risk/sizing and queue the orders,
   which fill on the next bar's open.

The backtest driver calls it only on bars where something can happen (a signal, a pending
order, a stop level within the bar's range) and reconstructs equity in between from the
returned state; the paper/live engine calls it on every bar from its feed. Nothing here
knows which of the two is driving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

from atb.engine.fills import FillModel
from atb.engine.inputs import Bar, Signal
from atb.engine.orders import Order, OrderReason
from atb.engine.portfolio import Portfolio, Position, Trade
from atb.engine.risk import Decision, RiskSettings, decide
from atb.logging.events import log_decision_event, log_order_event, log_risk_event


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
    fills: list[Order] = field(default_factory=list)
    trades: list[Trade] = field(default_factory=list)
    decision: DecisionRecord | None = None


class DecisionPath:
    def __init__(
        self,
        portfolio: Portfolio,
        fills: FillModel,
        risk: RiskSettings,
        *,
        log_orders: bool = True,
    ) -> None:
        self.portfolio = portfolio
        self.fill_model = fills
        self.risk = risk
        self.log_orders = log_orders
        self.pending: list[Order] = []
        self.orders: list[Order] = []
        self.decisions: list[DecisionRecord] = []

    # -- the per-bar step -------------------------------------------------------------
    def on_bar(self, bar: Bar, signal: Signal | None = None) -> Step:
        step = Step(0.0, 0.0, 0.0, 0.0)
        if self.pending:
            self._fill_pending(bar, step)
        pos = self.portfolio.position
        if pos is not None and (pos.stop_price is not None or pos.take_price is not None):
            self._check_stops(bar, pos, step)
        if signal is not None and not signal.is_hold:
            step.decision = self._decide(bar, signal)
        return self._state(bar.close, step)

    def finish(self, bar: Bar, close_position: bool = True) -> Step:
        """End of a run: cancel what cannot fill any more, optionally close at the last close."""
        for order in self.pending:
            order.status = "cancelled"
            order.note = "run ended before the next bar"
        self.pending = []
        step = Step(0.0, 0.0, 0.0, 0.0)
        pos = self.portfolio.position
        if close_position and pos is not None:
            order = self._new_order(bar.time, -pos.side, "exit", "end_of_data")
            self._execute_exit(order, bar, bar.close, step)
        return self._state(bar.close, step)

    @property
    def idle(self) -> bool:
        """True when nothing can happen on a bar without a signal: no orders, no stop levels."""
        pos = self.portfolio.position
        return not self.pending and (
            pos is None or (pos.stop_price is None and pos.take_price is None)
        )

    # -- internals ----------------------------------------------------------------------
    def _state(self, close: float, step: Step) -> Step:
        p = self.portfolio
        step.cash, step.qty, step.balance = p.cash, p.signed_qty, p.balance
        step.equity = p.cash + step.qty * close
        return step

    def _decide(self, bar: Bar, signal: Signal) -> DecisionRecord:
        decision: Decision = decide(signal, self.portfolio.side, self.risk)
        if decision.closes:
            pos = self.portfolio.position
            assert pos is not None
            self.pending.append(self._new_order(bar.time, -pos.side, "exit", "signal"))
        side = decision.opens
        if side:
            order = self._new_order(bar.time, side, "entry", "signal")
            order.size = decision.size
            order.stop_loss = signal.stop_loss
            order.take_profit = signal.take_profit
            self.pending.append(order)
        record = DecisionRecord(
            bar=bar.index,
            time=bar.time,
            direction=signal.direction,
            confidence=signal.confidence,
            action=decision.action,
            size=decision.size,
            reason=decision.reason,
            price=bar.close,
        )
        self.decisions.append(record)
        if self.log_orders:
            self._risk_events(bar, signal, decision)
        if decision.action == "none" and self.log_orders:
            log_decision_event(
                "decision",
                time=bar.time.isoformat(),
                signal=signal.direction,
                action=decision.action,
                size=0.0,
                reason=decision.reason,
            )
        return record

    def _risk_events(self, bar: Bar, signal: Signal, decision: Decision) -> None:
        """Where risk changed what the signal asked for (seed: log_risk_event)."""
        wanted = self.risk.position_size if self.risk.position_size is not None else signal.size
        if decision.opens and wanted > self.risk.max_position:
            log_risk_event(
                "position_capped",
                time=bar.time.isoformat(),
                side="long" if decision.opens > 0 else "short",
                requested=wanted,
                size=decision.size,
                max_position=self.risk.max_position,
                reason=decision.reason,
            )
        elif (
            not decision.opens
            and wanted <= 0
            and decision.action in ("none", "close_long", "close_short")
        ):
            log_risk_event(
                "signal_sized_to_zero",
                time=bar.time.isoformat(),
                signal=signal.direction,
                confidence=signal.confidence,
                action=decision.action,
                reason=decision.reason,
            )

    def _new_order(self, time: datetime, side: int, kind: str, reason: OrderReason) -> Order:
        order = Order(
            id=len(self.orders) + 1,
            created=time,
            side=side,
            kind=kind,  # type: ignore[arg-type]
            reason=reason,
        )
        self.orders.append(order)
        return order

    def _fill_pending(self, bar: Bar, step: Step) -> None:
        pending, self.pending = self.pending, []
        for order in pending:
            if order.kind == "exit":
                if self.portfolio.position is None or self.portfolio.side != -order.side:
                    # A stop closed the position first: nothing left to exit.
                    order.status = "cancelled"
                    order.note = "position already closed"
                    continue
                self._execute_exit(order, bar, bar.open, step)
            else:
                self._execute_entry(order, bar, step)

    def _execute_entry(self, order: Order, bar: Bar, step: Step) -> None:
        p = self.portfolio
        if p.position is not None:
            order.status = "rejected"
            order.note = "a position is already open"
            self._log(order)
            return
        price = self.fill_model.price(bar.open, order.side)
        budget = order.size * p.cash
        # Size so that notional + fee spend exactly `size` of the balance.
        qty = budget / (price * (1.0 + self.fill_model.fee)) if budget > 0 else 0.0
        if qty <= 0:
            order.status = "rejected"
            order.note = "no balance to size the order"
            self._log(order)
            if self.log_orders:
                log_risk_event(
                    "insufficient_balance",
                    level="WARNING",
                    **self._order_ids(order),
                    time=bar.time.isoformat(),
                    cash=p.cash,
                    size=order.size,
                    price=price,
                    reason="trade refused: no balance to size the order",
                )
            return
        fee = self.fill_model.cost(qty, price)
        pos: Position = p.open(order.side, qty, price, fee, bar.time, bar.index)
        if order.stop_loss is not None:
            pos.stop_price = price * (1.0 - pos.side * order.stop_loss)
        if order.take_profit is not None:
            pos.take_price = price * (1.0 + pos.side * order.take_profit)
        self._filled(order, bar, qty, price, fee, pos.id)
        step.fills.append(order)

    def _execute_exit(self, order: Order, bar: Bar, reference: float, step: Step) -> None:
        p = self.portfolio
        pos = p.position
        assert pos is not None
        price = self.fill_model.price(reference, order.side)
        fee = self.fill_model.cost(pos.qty, price)
        trade = p.close(price, fee, bar.time, bar.index, order.reason)
        self._filled(order, bar, trade.qty, price, fee, pos.id)
        step.fills.append(order)
        step.trades.append(trade)

    def _check_stops(self, bar: Bar, pos: Position, step: Step) -> None:
        hit = self.fill_model.stop_exit(
            pos.side, pos.stop_price, pos.take_price, bar.open, bar.high, bar.low
        )
        if hit is None:
            return
        reference, reason = hit
        if self.log_orders:
            log_risk_event(
                f"{reason}_triggered",  # stop_loss_triggered / take_profit_triggered
                level="WARNING" if reason == "stop_loss" else "INFO",
                time=bar.time.isoformat(),
                position_no=pos.id,
                side="long" if pos.side > 0 else "short",
                qty=pos.qty,
                entry_price=pos.entry_price,
                trigger_price=pos.stop_price if reason == "stop_loss" else pos.take_price,
                price=reference,
                reason=reason,
            )
        order = self._new_order(bar.time, -pos.side, "exit", reason)
        self._execute_exit(order, bar, reference, step)

    def _filled(
        self, order: Order, bar: Bar, qty: float, price: float, fee: float, position_id: int
    ) -> None:
        order.status = "filled"
        order.filled_at = bar.time
        order.qty = qty
        order.price = price
        order.fee = fee
        order.position_id = position_id
        self._log(order)

    def _log(self, order: Order) -> None:
        if self.log_orders:
            log_order_event(
                f"order_{order.status}",
                level=self._order_level(order),
                **self._order_ids(order),
                side=order.side_name,
                kind=order.kind,
                reason=order.reason,
                qty=order.qty,
                price=order.price,
                fee=order.fee,
                time=(order.filled_at or order.created).isoformat(),
                note=order.note,
            )

    def _order_ids(self, order: Order) -> dict[str, Any]:
        """How an order is named in its events; paper/live paths add their own ids."""
        return {"order_id": order.id}

    def _order_level(self, order: Order) -> str:
        return "INFO"
