"""Records of a paper/live session, written as things happen, and the resume rule.

A session is a run (`runs` row, mode paper|live) whose children are written one bar at a
time, each bar in one transaction: the orders whose status changed, positions opened,
closed or re-marked, trades, the decision, the prediction, one account row, and the
session's state snapshot in `runs.metrics["state"]` (cash, balance, open position, peak
equity, orders in flight). Rows carry the run's mode, so paper, live and backtest rows
never mix.

Resume rule (`live.resume: true`, the default): a new session continues the newest earlier
run with the same mode, strategy, symbol, timeframe and `live.session` name, whatever its
status (stopped, finished, or still "running" because the process died). It takes over
that run's cash, realized balance, open position (re-recorded as open in the new run; the
old row is marked `resumed`) and peak equity, and it will not act again on a bar the old
run already processed. A run that was left "running" is closed as failed ("interrupted").
Start afresh with `live.resume=false` or another `live.session=<name>`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Table, desc, insert, select, update

from atb.db.models.run_records import (
    AccountSnapshot,
    DecisionRecordRow,
    OrderRecord,
    PositionRecord,
    PredictionRecord,
    Run,
    TradeRecord,
)
from atb.engine.decision import DecisionRecord
from atb.engine.orders import Order
from atb.engine.portfolio import Position, Trade
from atb.engine.records import RunRecorder, clean_json


def _table(model: type) -> Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, Table)
    return table


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _dt(value: Any) -> datetime | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return ts.to_pydatetime()


@dataclass
class SessionState:
    """What a session must remember across a restart (JSON in runs.metrics["state"])."""

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
            "peak_equity": self.peak_equity, "last_bar": _iso(self.last_bar),
            "position": self.position, "inflight": list(self.inflight),
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionState:
        return cls(
            cash=float(data["cash"]), balance=float(data["balance"]),
            initial_balance=float(data.get("initial_balance", data["balance"])),
            peak_equity=float(data.get("peak_equity", data["balance"])),
            last_bar=_dt(data.get("last_bar")), position=data.get("position"),
            inflight=list(data.get("inflight") or []),
        )  # fmt: skip


def position_json(pos: Position) -> dict[str, Any]:
    return {
        "side": pos.side, "qty": pos.qty, "entry_time": pos.entry_time.isoformat(),
        "entry_price": pos.entry_price, "entry_fee": pos.entry_fee,
        "stop_price": pos.stop_price, "take_price": pos.take_price,
    }  # fmt: skip


@dataclass
class PreviousSession:
    run_id: str
    status: str
    state: SessionState


class LiveRecorder(RunRecorder):
    """RunRecorder plus per-bar upserts and the session state; see the module docstring."""

    def __init__(self, db: Any, ctx: Any, *, exchange_ids: dict[int, str] | None = None) -> None:
        super().__init__(db, ctx)
        self._orders: set[int] = set()
        self._positions: set[int] = set()
        self.exchange_ids: dict[int, str] = exchange_ids if exchange_ids is not None else {}
        # Shared with LiveDecisionPath.error_codes (set by the engine), like exchange_ids.
        self.error_codes: dict[int, str] = {}

    # -- resume -------------------------------------------------------------------------
    def parameters_of(self, run_id: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            value = s.execute(select(Run.parameters).where(Run.id == run_id)).scalar()
        return clean_json(value) if isinstance(value, dict) else None

    def find_previous(self, strategy: str | None, session: str) -> PreviousSession | None:
        ctx = self.ctx
        with self.db.session() as s:
            rows = s.execute(
                select(Run.id, Run.status, Run.config, Run.metrics)
                .where(
                    Run.mode == ctx.mode,
                    Run.strategy == strategy,
                    Run.symbol == ctx.symbol,
                    Run.timeframe == ctx.timeframe,
                    Run.id != self.run_id,
                )
                .order_by(desc(Run.started_at))
                .limit(50)
            ).all()
        for run_id, status, config, metrics in rows:
            live_cfg = (config or {}).get("live") or {}
            if live_cfg.get("session", "default") != session:
                continue
            state = (metrics or {}).get("state")
            if not isinstance(state, dict) or "cash" not in state:
                continue  # never got as far as its first state snapshot
            return PreviousSession(run_id, status, SessionState.from_json(state))
        return None

    def retire_previous(self, previous: PreviousSession) -> None:
        """Hand the previous run's open position over to this one, close it if it died."""
        with self.db.session() as s:
            s.execute(
                update(PositionRecord)
                .where(PositionRecord.run_id == previous.run_id, PositionRecord.status == "open")
                .values(status="resumed")
            )
            if previous.status == "running":
                s.execute(
                    update(Run)
                    .where(Run.id == previous.run_id)
                    .values(
                        status="failed",
                        finished_at=datetime.now(UTC),
                        error=f"interrupted (no clean stop); resumed by run {self.run_id}",
                    )
                )

    def settle_previous_order(
        self, run_id: str, order_no: int, status: str, note: str, **values: Any
    ) -> None:
        with self.db.session() as s:
            s.execute(
                update(OrderRecord)
                .where(OrderRecord.run_id == run_id, OrderRecord.order_no == order_no)
                .values(status=status, note=note, **values)
            )

    # -- per bar ------------------------------------------------------------------------
    def write_bar(
        self,
        *,
        orders: list[Order],
        positions: list[Position],
        trades: list[Trade],
        decision: DecisionRecord | None,
        account: dict[str, Any] | None,
        prediction: dict[str, Any] | None,
        mark: float | None,
        state: SessionState,
        metrics: dict[str, Any],
    ) -> None:
        with self.db.session() as s:
            self._upsert_orders(s, orders)
            self._upsert_positions(s, positions, trades, mark)
            if trades:
                s.execute(insert(_table(TradeRecord)), self.trade_rows(trades))
            if decision is not None:
                s.execute(insert(_table(DecisionRecordRow)), self.decision_rows([decision]))
            if account is not None:
                s.execute(
                    insert(_table(AccountSnapshot)),
                    [{"run_id": self.run_id, "mode": self.mode, **account}],
                )
            if prediction is not None:
                s.execute(
                    insert(_table(PredictionRecord)),
                    [{"run_id": self.run_id, "mode": self.mode, **prediction}],
                )
            self._snapshot(s, state, metrics)

    def write_orders(
        self, orders: list[Order], state: SessionState, metrics: dict[str, Any]
    ) -> None:
        """Orders alone (the write-ahead before a live order leaves, or its settlement)."""
        with self.db.session() as s:
            self._upsert_orders(s, orders)
            self._snapshot(s, state, metrics)

    def close(
        self, status: str, metrics: dict[str, Any], state: SessionState, error: str | None = None
    ) -> None:
        values: dict[str, Any] = {
            "status": status,
            "finished_at": datetime.now(UTC),
            "metrics": clean_json({**metrics, "state": state.to_json()}),
        }
        if error:
            values["error"] = error[:4000]
        with self.db.session() as s:
            s.execute(update(Run).where(Run.id == self.run_id).values(**values))

    # -- internals ----------------------------------------------------------------------
    def _snapshot(self, s: Any, state: SessionState, metrics: dict[str, Any]) -> None:
        # Core statements on the tables: the ORM's bulk-update bookkeeping would cost more
        # than the write itself, once per bar.
        runs = _table(Run)
        s.execute(
            update(runs)
            .where(runs.c.id == self.run_id)
            .values(metrics=clean_json({**metrics, "state": state.to_json()}))
        )

    def _upsert_orders(self, s: Any, orders: list[Order]) -> None:
        for row, order in zip(self.order_rows(orders), orders, strict=True):
            row["exchange_order_id"] = self.exchange_ids.get(order.id)
            row["error_code"] = self.error_codes.get(order.id)
            if order.status == "pending":
                row["qty"] = order.qty or None
            if order.id in self._orders:
                keys = (
                    "status",
                    "filled_at",
                    "qty",
                    "price",
                    "fee",
                    "position_no",
                    "exchange_order_id",
                    "note",
                    "error_code",
                )
                table = _table(OrderRecord)
                s.execute(
                    update(table)
                    .where(table.c.run_id == self.run_id, table.c.order_no == order.id)
                    .values(**{k: row[k] for k in keys})
                )
            else:
                s.execute(insert(_table(OrderRecord)), [row])
                self._orders.add(order.id)

    def _upsert_positions(
        self, s: Any, positions: list[Position], trades: list[Trade], mark: float | None
    ) -> None:
        for row in self.position_rows(positions, trades, mark):
            no = row["position_no"]
            if no in self._positions:
                keys = (
                    "qty",
                    "stop_loss",
                    "take_profit",
                    "status",
                    "closed_at",
                    "exit_price",
                    "realized_pnl",
                    "last_price",
                    "unrealized_pnl",
                )
                table = _table(PositionRecord)
                s.execute(
                    update(table)
                    .where(table.c.run_id == self.run_id, table.c.position_no == no)
                    .values(**{k: row[k] for k in keys})
                )
            else:
                s.execute(insert(_table(PositionRecord)), [row])
                self._positions.add(no)
