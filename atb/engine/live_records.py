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
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Table, desc, select, update

from atb.db.models.run_records import (
    OrderRecord,
    PositionRecord,
    Run,
)
from atb.engine.decision import DecisionRecord
from atb.engine.orders import Order
from atb.engine.portfolio import Position, Trade
from atb.engine.record_log import RecordLog, apply_ops, log_path
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
        self.log: RecordLog | None = None
        self._seq = 0
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

    # -- the write-ahead record log ------------------------------------------------------
    def open_log(self, directory: Path, on_error: Any = None) -> None:
        """Route every later write through a RecordLog in `directory` (see record_log.py)."""
        self.log = RecordLog(
            self._engine, log_path(directory, self.run_id), self.run_id, on_error=on_error
        )
        self.log.open()

    def close_log(self, timeout: float) -> bool:
        return True if self.log is None else self.log.close(timeout)

    @property
    def _engine(self) -> Any:
        return getattr(self.db, "engine")  # noqa: B009 - the db node, not SessionSource

    def _write(self, op: dict[str, Any]) -> None:
        if self.log is not None:
            self.log.append(op)
            return
        op = {"seq": self._seq + 1, "run_id": self.run_id, **op}
        self._seq += 1
        with self._engine.begin() as conn:
            apply_ops(conn, [clean_json(op)])

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
        common = {"run_id": self.run_id, "mode": self.mode}
        self._write(
            {
                "orders": self._order_rows(orders),
                "positions": self.position_rows(positions, trades, mark),
                "trades": self.trade_rows(trades) if trades else None,
                "decisions": self.decision_rows([decision]) if decision is not None else None,
                "account": [{**common, **account}] if account is not None else None,
                "predictions": [{**common, **prediction}] if prediction is not None else None,
                "metrics": self._metrics(state, metrics),
            }
        )

    def write_orders(
        self, orders: list[Order], state: SessionState, metrics: dict[str, Any]
    ) -> None:
        """Orders alone (the write-ahead before a live order leaves, or its settlement)."""
        self._write({"orders": self._order_rows(orders), "metrics": self._metrics(state, metrics)})

    def close(
        self, status: str, metrics: dict[str, Any], state: SessionState, error: str | None = None
    ) -> None:
        values: dict[str, Any] = {"status": status, "finished_at": datetime.now(UTC)}
        if error:
            values["error"] = error[:4000]
        self._write({"metrics": self._metrics(state, metrics), "close": values})

    # -- internals ----------------------------------------------------------------------
    def _metrics(self, state: SessionState, metrics: dict[str, Any]) -> dict[str, Any]:
        return clean_json({**metrics, "state": state.to_json()})

    def _order_rows(self, orders: list[Order]) -> list[dict[str, Any]]:
        rows = self.order_rows(orders)
        for row, order in zip(rows, orders, strict=True):
            row["exchange_order_id"] = self.exchange_ids.get(order.id)
            row["error_code"] = self.error_codes.get(order.id)
            if order.status == "pending":
                row["qty"] = order.qty or None
        return rows
