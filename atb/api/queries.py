"""The JSON API's reads over the run records (atb.db.models): one function per endpoint.

Each takes an open SQLAlchemy `Connection` and a run id and returns the endpoint's model
(atb.api.schemas). Lists are ordered newest first and paged with LIMIT/OFFSET, with the
total counted in the same transaction. Nothing here writes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, case, func, select
from sqlalchemy.engine import Row

from atb import __version__
from atb.api.errors import RunNotFound
from atb.api.schemas import (
    Balance,
    Loop,
    Metrics,
    Position,
    PositionsPage,
    RunRef,
    SystemStatus,
    Trade,
    TradesPage,
)
from atb.db.models.heartbeats import RunHeartbeat
from atb.db.models.run_records import AccountSnapshot, PositionRecord, Run, TradeRecord
from atb.runtime.liveness import judge

SESSION_MODES = ("live", "paper")
LOOP_STATUS = {"running": "healthy", "starting": "healthy", "degraded": "degraded"}

runs = Run.__table__
trades_t = TradeRecord.__table__
positions_t = PositionRecord.__table__
account_t = AccountSnapshot.__table__
heartbeats_t = RunHeartbeat.__table__


def utc(value: Any) -> Any:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _fields(row: Row[Any], names: set[str]) -> dict[str, Any]:
    return {k: utc(v) for k, v in row._mapping.items() if k in names}


def latest_run_id(conn: Connection) -> str:
    """The newest paper/live session, else the newest run of any mode."""
    for where in (runs.c.mode.in_(SESSION_MODES), None):
        query = select(runs.c.id).order_by(runs.c.started_at.desc(), runs.c.id.desc()).limit(1)
        if where is not None:
            query = query.where(where)
        run_id = conn.execute(query).scalar()
        if run_id is not None:
            return str(run_id)
    raise RunNotFound("no runs in this database")


def run_ref(conn: Connection, run_id: str) -> RunRef:
    row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
    if row is None:
        raise RunNotFound(f"no run '{run_id}'")
    values = _fields(row, set(RunRef.model_fields))
    return RunRef(run_id=str(row.id), **values)


def _page(conn: Connection, table: Any, where: Any, order: Any, limit: int, offset: int) -> Any:
    total = conn.execute(select(func.count()).select_from(table).where(where)).scalar() or 0
    rows = conn.execute(select(table).where(where).order_by(*order).limit(limit).offset(offset))
    return int(total), rows.all()


def trades(conn: Connection, run_id: str, limit: int, offset: int) -> TradesPage:
    run_ref(conn, run_id)
    order = (trades_t.c.exit_time.desc(), trades_t.c.id.desc())
    total, rows = _page(conn, trades_t, trades_t.c.run_id == run_id, order, limit, offset)
    names = set(Trade.model_fields)
    items = [Trade(**_fields(r, names)) for r in rows]
    return TradesPage(run_id=run_id, total=total, limit=limit, offset=offset, items=items)


def positions(conn: Connection, run_id: str, status: str, limit: int, offset: int) -> PositionsPage:
    run_ref(conn, run_id)
    where = positions_t.c.run_id == run_id
    if status != "all":
        where = where & (positions_t.c.status == status)
    order = (positions_t.c.entry_time.desc(), positions_t.c.id.desc())
    total, rows = _page(conn, positions_t, where, order, limit, offset)
    names = set(Position.model_fields)
    items = [Position(**_fields(r, names)) for r in rows]
    return PositionsPage(
        run_id=run_id, status=status, total=total, limit=limit, offset=offset, items=items
    )


def _snapshot(conn: Connection, run_id: str, newest: bool) -> Row[Any] | None:
    order = (account_t.c.time.desc(), account_t.c.id.desc()) if newest else (account_t.c.time,)
    query = select(account_t).where(account_t.c.run_id == run_id).order_by(*order).limit(1)
    return conn.execute(query).first()


def balance(conn: Connection, run_id: str) -> Balance:
    run_ref(conn, run_id)
    last = _snapshot(conn, run_id, newest=True)
    first = _snapshot(conn, run_id, newest=False)
    if last is None:
        return Balance(
            run_id=run_id, time=None, balance=None, equity=None, drawdown=None,
            open_positions=0, exposure=None, initial_equity=None,
        )  # fmt: skip
    return Balance(
        run_id=run_id,
        time=utc(last.time),
        balance=last.balance,
        equity=last.equity,
        drawdown=last.drawdown,
        open_positions=last.open_positions,
        exposure=last.exposure,
        initial_equity=None if first is None else first.equity,
    )


def metrics(conn: Connection, run_id: str) -> Metrics:
    run = run_ref(conn, run_id)
    pnl = trades_t.c.pnl
    agg = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((pnl > 0, 1), else_=0)), 0),
            func.coalesce(func.sum(case((pnl < 0, 1), else_=0)), 0),
            func.coalesce(func.sum(pnl), 0.0),
            func.coalesce(func.sum(trades_t.c.fees), 0.0),
            func.coalesce(func.sum(case((pnl > 0, pnl), else_=0.0)), 0.0),
            func.coalesce(func.sum(case((pnl < 0, -pnl), else_=0.0)), 0.0),
        ).where(trades_t.c.run_id == run_id)
    ).one()
    count, wins, losses, realized, fees, gross_win, gross_loss = agg
    max_dd = conn.execute(
        select(func.max(account_t.c.drawdown)).where(account_t.c.run_id == run_id)
    ).scalar()
    bal = balance(conn, run_id)
    stored = conn.execute(select(runs.c.metrics).where(runs.c.id == run_id)).scalar()
    total_return = None
    if bal.equity is not None and bal.initial_equity:
        total_return = bal.equity / bal.initial_equity - 1
    return Metrics(
        run=run,
        trades=int(count),
        wins=int(wins),
        losses=int(losses),
        win_rate=(int(wins) / int(count)) if count else None,
        realized_pnl=float(realized),
        fees=float(fees),
        profit_factor=(float(gross_win) / float(gross_loss)) if gross_loss else None,
        equity=bal.equity,
        total_return=total_return,
        max_drawdown=max_dd,
        open_positions=bal.open_positions,
        run_metrics=stored if isinstance(stored, dict) else None,
    )


def stored_loop(conn: Connection, run_id: str) -> Loop | None:
    """The loop's verdict from its `run_heartbeats` row (sessions only)."""
    row = conn.execute(select(heartbeats_t).where(heartbeats_t.c.run_id == run_id)).first()
    if row is None:
        return None
    now = time.time()
    pulse = utc(row.pulse_at)
    started = utc(row.started_at)
    verdict = judge(
        waited=None if started is None else now - started.timestamp(),
        pulse_age=None if pulse is None else max(0.0, now - pulse.timestamp()),
        interval=row.interval_seconds,
        extra_wait=float(row.extra_wait_seconds or 0.0),
        failures=int(row.failures or 0),
        last_error=row.last_error,
        stopped=row.stopped_at is not None,
        stopped_reason=row.stop_reason,
    )
    return Loop(
        state=verdict.state,
        reason=verdict.reason,
        iterations=row.iterations,
        last_beat_at=utc(row.beat_at),
        source="database",
    )


def system_status(
    conn: Connection, run_id: str, dialect: str, loop: Loop | None = None
) -> SystemStatus:
    """`loop`: the running session's own view (health server); else its stored row."""
    run = run_ref(conn, run_id)
    started = time.perf_counter()
    conn.exec_driver_sql("SELECT 1")
    latency = round((time.perf_counter() - started) * 1000, 2)
    if loop is None:
        loop = stored_loop(conn, run_id)
    status = "healthy" if loop is None else LOOP_STATUS.get(loop.state, "unhealthy")
    return SystemStatus(
        status=status,
        timestamp=datetime.now(UTC),
        run=run,
        loop=loop,
        database={"dialect": dialect, "connected": True, "latency_ms": latency},
        version=__version__,
    )
