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
knows which of the two is driving. How an order becomes a fill is the `Execution`'s
(execution.py: simulated for backtest and paper, the exchange for live); sizing, stop/take
levels and booking a fill into the portfolio are here, once, for all of them.
"""

from __future__ import annotations

from datetime import datetime

from atb.engine.decision_log import DecisionSink
from atb.engine.execution import Execution, SimulatedExecution
from atb.engine.fills import FillModel
from atb.engine.inputs import Bar, Signal
from atb.engine.orders import Order, OrderReason
from atb.engine.portfolio import Portfolio, Position, Trade
from atb.engine.risk import CLOSES, OPENS, Decision, RiskSettings, decide
from atb.engine.step import DecisionRecord, Fill, Step, empty_step
from atb.logging.events import log_decision_event, log_order_event, log_risk_event
from atb.strategies.base import HOLD

__all__ = ["DecisionPath", "DecisionRecord", "Step"]

_new = tuple.__new__


def log_decision(d: DecisionRecord) -> None:
    log_decision_event(
        "decision",
        time=d.time.isoformat(),
        signal=d.direction,
        confidence=d.confidence,
        action=d.action,
        size=d.size,
        reason=d.reason,
        price=d.price,
    )


class DecisionPath:
    def __init__(
        self,
        portfolio: Portfolio,
        fills: FillModel,
        risk: RiskSettings,
        *,
        log_orders: bool = True,
        execution: Execution | None = None,
        decisions: DecisionSink | None = None,
    ) -> None:
        self.portfolio = portfolio
        self.fill_model = fills
        self.risk = risk
        self.log_orders = log_orders
        self.pending: list[Order] = []
        self.orders: list[Order] = []
        self.decisions: DecisionSink = [] if decisions is None else decisions
        self.execution = execution if execution is not None else SimulatedExecution()
        self.execution.bind(self)

    # -- the per-bar step -------------------------------------------------------------
    def on_bar(self, bar: Bar, signal: Signal | None = None) -> Step:
        step = Step(0.0, 0.0, 0.0, 0.0, [], [])
        if self.pending:
            self.fill_pending(bar, step)
        p = self.portfolio
        pos = p.position
        if pos is not None and (pos.stop_price is not None or pos.take_price is not None):
            self._check_stops(bar, pos, step)
        if signal is not None and signal.direction != HOLD:
            step.decision = self._decide(bar, signal)
        # The state after the bar, written out rather than via _state(): this runs once per
        # stepped bar and the backtest's speed is mostly these few lines.
        pos = p.position
        qty = 0.0 if pos is None else pos.side * pos.qty
        step.cash, step.qty, step.balance = p.cash, qty, p.balance
        step.equity = p.cash + qty * bar.close
        return step

    def finish(self, bar: Bar, close_position: bool = True) -> Step:
        """End of a run: cancel what cannot fill any more, optionally close at the last close."""
        self.cancel_pending("run ended before the next bar")
        step = empty_step()
        pos = self.portfolio.position
        if close_position and pos is not None:
            order = self.new_order(bar.time, -pos.side, "exit", "end_of_data")
            self.execution.exit(order, bar, bar.close, step)
        return self._state(bar.close, step)

    def cancel_pending(self, note: str) -> list[Order]:
        cancelled, self.pending = self.pending, []
        for order in cancelled:
            order.status = "cancelled"
            order.note = note
        return cancelled

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
        pos = self.portfolio.position
        decision: Decision = decide(signal, 0 if pos is None else pos.side, self.risk)
        action = decision.action
        if action in CLOSES:
            assert pos is not None
            self.pending.append(self.new_order(bar.time, -pos.side, "exit", "signal"))
        side = OPENS.get(action, 0)
        if side:
            order = self.new_order(bar.time, side, "entry", "signal")
            order.size = decision.size
            order.stop_loss = signal.stop_loss
            order.take_profit = signal.take_profit
            self.pending.append(order)
        # tuple.__new__ skips NamedTuple's Python-level __new__: this runs once per signal
        record = _new(
            DecisionRecord,
            (
                bar.index,
                bar.time,
                signal.direction,
                signal.confidence,
                action,
                decision.size,
                decision.reason,
                bar.close,
            ),
        )
        self.decisions.append(record)
        if self.log_orders:
            self._risk_events(bar, signal, decision)
            if action == "none":
                log_decision(record)
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

    # -- the booking every execution shares -------------------------------------------
    def new_order(self, time: datetime, side: int, kind: str, reason: OrderReason) -> Order:
        order = Order(len(self.orders) + 1, time, side, kind, reason)  # type: ignore[arg-type]
        self.orders.append(order)
        self.execution.accept(order)
        return order

    def entry_qty(self, order: Order, price: float) -> float:
        """Size so that notional + fee spend exactly the order's `size` of the cash."""
        budget = order.size * self.portfolio.cash
        return budget / (price * (1.0 + self.fill_model.fee)) if budget > 0 else 0.0

    def book_entry(self, order: Order, fill: Fill, step: Step) -> Position:
        """An entry filled: open the position with its stop/take levels from the fill price."""
        price = fill.price
        pos = self.portfolio.open(order.side, fill.qty, price, fill.fee, fill.when, fill.bar)
        if order.stop_loss is not None:
            pos.stop_price = price * (1.0 - pos.side * order.stop_loss)
        if order.take_profit is not None:
            pos.take_price = price * (1.0 + pos.side * order.take_profit)
        self._filled(order, fill.when, fill.qty, price, fill.fee, pos.id)
        step.fills.append(order)
        return pos

    def book_exit(self, order: Order, fill: Fill, step: Step) -> Trade:
        """An exit filled: close the open position at the fill's price."""
        pos = self.portfolio.position
        assert pos is not None
        if 0 < fill.qty < pos.qty:
            # Sold what the exchange's step allows; the dust left on the account is worth
            # less than one step and is no longer tracked as a position.
            pos.qty = fill.qty
        trade = self.portfolio.close(fill.price, fill.fee, fill.when, fill.bar, order.reason)
        self._filled(order, fill.when, trade.qty, fill.price, fill.fee, pos.id)
        step.fills.append(order)
        step.trades.append(trade)
        return trade

    def reject(self, order: Order, note: str) -> None:
        order.status = "rejected"
        order.note = note
        if self.log_orders:
            self._log(order)
        self.execution.settled(order)

    def fill_pending(self, bar: Bar, step: Step) -> None:
        """Execute the queued orders (the backtest and paper: at this bar's open)."""
        pending, self.pending = self.pending, []
        execution = self.execution
        for order in pending:
            if order.kind == "exit":
                pos = self.portfolio.position
                if pos is None or pos.side != -order.side:
                    # A stop closed the position first: nothing left to exit.
                    order.status = "cancelled"
                    order.note = "position already closed"
                    continue
                execution.exit(order, bar, bar.open, step)
            elif self.portfolio.position is not None:
                self.reject(order, "a position is already open")
            else:
                execution.entry(order, bar, step)

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
        order = self.new_order(bar.time, -pos.side, "exit", reason)
        self.execution.exit(order, bar, reference, step)

    def _filled(
        self, order: Order, when: datetime, qty: float, price: float, fee: float, position_id: int
    ) -> None:
        order.status = "filled"
        order.filled_at = when
        order.qty = qty
        order.price = price
        order.fee = fee
        order.position_id = position_id
        if self.log_orders:
            self._log(order)
        self.execution.settled(order)

    def _log(self, order: Order) -> None:
        execution = self.execution
        log_order_event(
            f"order_{order.status}",
            level=execution.order_level(order),
            **execution.order_ids(order),
            side=order.side_name,
            kind=order.kind,
            reason=order.reason,
            qty=order.qty,
            price=order.price,
            fee=order.fee,
            time=(order.filled_at or order.created).isoformat(),
            note=order.note,
        )
