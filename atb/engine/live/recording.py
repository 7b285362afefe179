"""What a session tells the world about each bar: events, health metrics and records.

Per processed bar: the decision and position events, the account figures for /metrics,
and (with a database) one `LiveRecorder.write_bar` holding the orders whose status changed
since they were last written, the positions touched, trades, decision, prediction, the
account row and the session state. Orders are also written on their own the moment an
execution announces or settles them (`write_orders`), so an order on the wire is on
record before the request leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atb.engine.decision import DecisionPath, log_decision
from atb.engine.inputs import Bar
from atb.engine.live.account import SessionAccount, SessionState
from atb.engine.live.recorder import LiveRecorder
from atb.engine.orders import Order
from atb.engine.portfolio import Position
from atb.engine.records import exposure_ratio, prediction_row
from atb.engine.step import Step
from atb.engine.trading import RecordSettings
from atb.health import metrics as _metrics
from atb.logging.events import log_engine_event
from atb.strategies.base import SignalFrame


class SessionRecording:
    def __init__(
        self,
        recorder: LiveRecorder | None,
        settings: RecordSettings,
        account: SessionAccount,
        path: DecisionPath,
        metrics: Callable[[], dict[str, Any]],
    ) -> None:
        self.recorder = recorder
        self.settings = settings
        self.account = account
        self.path = path
        self.metrics = metrics
        self._written: dict[int, str] = {}
        self._watermark = 0
        """Orders before this index are final and written: never looked at again."""

    def state(self) -> SessionState:
        return self.account.state(self.path.execution.in_flight)

    def write_orders(self, orders: list[Order]) -> None:
        for o in orders:
            self._written[o.id] = o.status
        if self.recorder is not None:
            self.recorder.write_orders(orders, self.state(), self.metrics())

    def persist_state(self) -> None:
        """The state snapshot (and any order not yet written), outside a bar."""
        if self.recorder is None:
            return
        pos = self.account.portfolio.position
        self.recorder.write_bar(
            orders=self.changed_orders(),
            positions=[pos] if pos is not None else [],
            trades=[],
            decision=None,
            account=None,
            prediction=None,
            mark=pos.entry_price if pos is not None else None,
            state=self.state(),
            metrics=self.metrics(),
        )

    def record_bar(
        self, bar: Bar, step: Step, signals: SignalFrame | None, equity: float, drawdown: float
    ) -> None:
        p = self.account.portfolio
        _log_bar(step, p.position)
        _metrics.set_account(
            balance=p.cash,
            equity=equity,
            drawdown=drawdown,
            open_positions=int(p.position is not None),
        )
        for order in step.fills:
            if order.status == "filled":
                _metrics.record_fill(order.fee)
        for trade in step.trades:
            _metrics.record_realized_pnl(trade.pnl)
        if self.recorder is None:
            return
        rec = self.settings
        touched = _filled_positions(p.positions, step)
        if p.position is not None:
            touched.append(p.position)  # re-marked every bar
        positions = {pos.id: pos for pos in touched}
        self.recorder.write_bar(
            orders=self.changed_orders(),
            positions=list(positions.values()),
            trades=list(step.trades),
            decision=step.decision if rec.decisions else None,
            account={
                "time": bar.time,
                "balance": p.balance,
                "equity": equity,
                "drawdown": drawdown,
                "position_qty": p.signed_qty,
                "open_positions": int(p.position is not None),
                "exposure": exposure_ratio(p.signed_qty, bar.close, equity),
            }
            if rec.account_history
            else None,
            prediction=(
                prediction_row(signals.predictions if signals is not None else None, bar.time)
                if rec.predictions
                else None
            ),
            mark=bar.close,
            state=self.state(),
            metrics=self.metrics(),
        )

    def close(self, status: str, error: str | None, flush_timeout: float) -> None:
        if self.recorder is None:
            return
        changed = self.changed_orders()
        if changed:
            self.recorder.write_orders(changed, self.state(), self.metrics())
        self.recorder.close(status, self.metrics(), self.state(), error)
        self.recorder.close_log(flush_timeout)

    def changed_orders(self) -> list[Order]:
        orders = self.path.orders
        written = self._written
        changed = [o for o in orders[self._watermark :] if written.get(o.id) != o.status]
        for o in changed:
            written[o.id] = o.status
        while (
            self._watermark < len(orders)
            and orders[self._watermark].status != "pending"
            and written.get(orders[self._watermark].id) is not None
        ):
            self._watermark += 1
        return changed


def _filled_positions(positions: list[Position], step: Step) -> list[Position]:
    """The positions this bar's fills belong to, in book order.

    Scanned from the newest: a fill belongs to the open position or one just closed, so
    the cost stays flat as the session's list of positions grows (a scan of the whole list
    per bar made every iteration slower the longer a session ran).
    """
    wanted = {o.position_id for o in step.fills if o.position_id is not None}
    found: list[Position] = []
    for pos in reversed(positions):
        if not wanted:
            break
        if pos.id in wanted:
            wanted.discard(pos.id)
            found.append(pos)
    found.reverse()
    return found


def _log_bar(step: Step, position: Position | None) -> None:
    if step.decision is not None and step.decision.action != "none":
        log_decision(step.decision)  # (the path itself reports those that do nothing)
    for trade in step.trades:
        log_engine_event(
            "close_position",
            position_no=trade.position_id,
            side="long" if trade.side > 0 else "short",
            qty=trade.qty,
            exit_price=trade.exit_price,
            pnl=trade.pnl,
            exit_reason=trade.exit_reason,
        )
    for order in step.fills:
        if order.kind == "entry" and position is not None:
            log_engine_event(
                "open_position",
                position_no=position.id,
                side="long" if position.side > 0 else "short",
                qty=position.qty,
                entry_price=position.entry_price,
                stop_price=position.stop_price,
                take_price=position.take_price,
                reason=order.reason,
            )
