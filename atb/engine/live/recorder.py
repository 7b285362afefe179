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
Start afresh with `live.resume=false` or another `live.session=<name>`. Either way, orders
earlier runs of the key left pending are settled at start (resume.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import desc, select, update

from atb.db.models.run_records import (
    OrderRecord,
    PositionRecord,
    Run,
)
from atb.engine.live.account import PreviousSession, SessionState
from atb.engine.orders import Order
from atb.engine.portfolio import Position, Trade
from atb.engine.record_log import RecordLog, apply_ops, log_path
from atb.engine.records import RunRecorder, clean_json
from atb.engine.step import DecisionRecord


class LiveRecorder(RunRecorder):
    """RunRecorder plus per-bar upserts and the session state; see the module docstring."""

    def __init__(self, db: Any, ctx: Any) -> None:
        super().__init__(db, ctx)
        self.log: RecordLog | None = None
        self._seq = 0

    # -- resume -------------------------------------------------------------------------
    def parameters_of(self, run_id: str) -> dict[str, Any] | None:
        with self.db.session() as s:
            value = s.execute(select(Run.parameters).where(Run.id == run_id)).scalar()
        return clean_json(value) if isinstance(value, dict) else None

    def session_runs(self, strategy: str | None, session: str) -> list[tuple[str, str, Any]]:
        """(run id, status, metrics) of the earlier runs with this run's session key, newest
        first: same mode, strategy, symbol, timeframe and `live.session`."""
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
        return [
            (run_id, status, metrics)
            for run_id, status, config, metrics in rows
            if ((config or {}).get("live") or {}).get("session", "default") == session
        ]

    def find_previous(self, strategy: str | None, session: str) -> PreviousSession | None:
        for run_id, status, metrics in self.session_runs(strategy, session):
            state = (metrics or {}).get("state")
            if not isinstance(state, dict) or "cash" not in state:
                continue  # never got as far as its first state snapshot
            return PreviousSession(run_id, status, SessionState.from_json(state))
        return None

    def pending_orders(self, run_ids: list[str]) -> list[Any]:
        """The rows of these runs' orders that never reached a final status."""
        if not run_ids:
            return []
        with self.db.session() as s:
            return list(
                s.execute(
                    select(
                        OrderRecord.run_id,
                        OrderRecord.order_no,
                        OrderRecord.side,
                        OrderRecord.kind,
                        OrderRecord.reason,
                        OrderRecord.size,
                    )
                    .where(OrderRecord.run_id.in_(run_ids), OrderRecord.status == "pending")
                    .order_by(OrderRecord.run_id, OrderRecord.order_no)
                ).all()
            )

    def retire_previous(self, previous: PreviousSession) -> None:
        """Hand the previous run's open position over to this one, close it if it died."""
        with self.db.session() as s:
            s.execute(
                update(PositionRecord)
                .where(PositionRecord.run_id == previous.run_id, PositionRecord.status == "open")
                .values(status="resumed")
            )
        self.close_interrupted([previous.run_id], f"resumed by run {self.run_id}")

    def close_interrupted(self, run_ids: list[str], how: str) -> None:
        """Runs of this session key still `running` when a new session starts died without
        a clean stop: close them as failed, so their status does not claim otherwise."""
        if not run_ids:
            return
        with self.db.session() as s:
            s.execute(
                update(Run)
                .where(Run.id.in_(run_ids), Run.status == "running")
                .values(
                    status="failed",
                    finished_at=datetime.now(UTC),
                    error=f"interrupted (no clean stop); {how}",
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
            if order.status == "pending":
                row["qty"] = order.qty or None
        return rows
