"""SQL for the monitoring dashboard. Every query names (run_id | session_id) and is either
bounded by LIMIT or reads only rows newer than an id the caller has already seen."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple, cast

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Table, case, func, select

from atb.dashboards.tables import account, events, positions, trades, where_run
from atb.db.series import ACCOUNT, read_series

TRADE_COLUMNS = (
    "id",
    "side",
    "qty",
    "entry_time",
    "entry_price",
    "exit_time",
    "exit_price",
    "pnl",
    "return_pct",
    "exit_reason",
)
ACCOUNT_COLUMNS = ("id", "time", "balance", "equity", "drawdown")
EVENT_COLUMNS = (
    "id", "timestamp", "severity", "event_type", "name", "component", "message", "details",
    "alert_method",
)  # fmt: skip
POSITION_COLUMNS = (
    "id",
    "position_no",
    "side",
    "qty",
    "entry_time",
    "entry_price",
    "last_price",
    "unrealized_pnl",
    "stop_loss",
    "take_profit",
)


def _no_index(column: Any) -> Any:
    """`column || ''`: the same value, but no index can serve the comparison.

    "Rows after id N" must walk the primary-key range (a handful of new rows). Given an
    equality on run_id, SQLite's planner (no ANALYZE statistics) picks the (run_id, time)
    index instead and scans every row of a long session; hiding the column from it leaves
    the rowid range as the only plan. PostgreSQL picks the primary key either way.
    """
    return column.concat("")


def _frame(rows: Any, columns: tuple[str, ...]) -> pd.DataFrame:
    # Plain tuples: given SQLAlchemy Rows, pandas probes every row for dataclass/namedtuple
    # attributes (thousands of failed attribute lookups, ~40 ms on a first paint).
    return pd.DataFrame([tuple(r) for r in rows], columns=list(columns))


def _rows_after(
    conn: Connection,
    table: Table,
    columns: tuple[str, ...],
    run_id: str,
    mode: str,
    after_id: int,
    limit: int,
) -> pd.DataFrame:
    """A run's rows with an id above `after_id`, by id (the primary-key range)."""
    query = (
        select(*[table.c[c] for c in columns])
        .where(
            table.c.id > after_id,
            _no_index(table.c.run_id) == run_id,
            _no_index(table.c.mode) == mode,
        )
        .order_by(table.c.id)
        .limit(limit)
    )
    return _frame(conn.execute(query), columns)


def trade_stats(conn: Connection, run_id: str, mode: str) -> dict[str, Any]:
    wins = func.sum(case((trades.c.pnl > 0, 1), else_=0))
    row = conn.execute(
        select(func.count(), wins, func.sum(trades.c.pnl), func.max(trades.c.id)).where(
            where_run(trades, run_id, mode)
        )
    ).one()
    return {"count": row[0] or 0, "wins": row[1] or 0, "pnl": row[2] or 0.0, "last_id": row[3]}


class AccountRow(NamedTuple):
    time: Any
    balance: float
    equity: float


def _compact(conn: Connection, run_id: str, mode: str, columns: tuple[str, ...]) -> Any:
    """A backtest's account series (`run_series`) with row numbers as ids; None for runs
    that append account_history rows (paper/live, older backtests)."""
    if mode != "backtest":
        return None
    frame = read_series(conn, run_id, ACCOUNT, columns, mode)
    if frame is not None:
        frame.insert(0, "id", np.arange(1, len(frame) + 1))
    return frame


def account_stats(conn: Connection, run_id: str, mode: str) -> dict[str, Any]:
    """Max drawdown, last id and the per-row equity return sums behind the Sharpe ratio."""
    compact = _compact(conn, run_id, mode, ("equity", "drawdown"))
    if compact is not None:
        equity = compact["equity"].to_numpy()
        with np.errstate(divide="ignore", invalid="ignore"):
            r = equity[1:] / equity[:-1] - 1.0
        r = r[np.isfinite(r)]
        return {
            "rows": len(compact),
            "max_drawdown": float(np.nanmax(compact["drawdown"])) if len(compact) else 0.0,
            "last_id": len(compact) or None,
            "n": len(r),
            "sum": float(r.sum()),
            "sumsq": float((r * r).sum()),
        }
    prev = func.lag(account.c.equity).over(order_by=(account.c.time, account.c.id))
    inner = (
        select(
            account.c.id.label("id"),
            account.c.drawdown.label("drawdown"),
            (account.c.equity / prev - 1.0).label("r"),
        )
        .where(where_run(account, run_id, mode))
        .subquery()
    )
    row = conn.execute(
        select(
            func.count(),
            func.max(inner.c.drawdown),
            func.max(inner.c.id),
            func.count(inner.c.r),
            func.sum(inner.c.r),
            func.sum(inner.c.r * inner.c.r),
        )
    ).one()
    return {
        "rows": row[0] or 0,
        "max_drawdown": row[1] or 0.0,
        "last_id": row[2],
        "n": row[3] or 0,
        "sum": row[4] or 0.0,
        "sumsq": row[5] or 0.0,
    }


def first_account_row(
    conn: Connection, run_id: str, mode: str, since: datetime | None = None
) -> Any:
    compact = _compact(conn, run_id, mode, ("balance", "equity"))
    if compact is not None:
        if since is not None:
            compact = compact[compact["time"] >= pd.Timestamp(since)]
        if not len(compact):
            return None
        first = compact.iloc[0]
        return AccountRow(first["time"], float(first["balance"]), float(first["equity"]))
    query = select(account.c.time, account.c.balance, account.c.equity).where(
        where_run(account, run_id, mode)
    )
    if since is not None:
        query = query.where(account.c.time >= since)
    return conn.execute(query.order_by(account.c.time.asc()).limit(1)).first()


def recent_account(conn: Connection, run_id: str, mode: str, limit: int) -> pd.DataFrame:
    compact = _compact(conn, run_id, mode, ACCOUNT_COLUMNS[2:])
    if compact is not None:
        return compact.tail(limit).reset_index(drop=True)[list(ACCOUNT_COLUMNS)]
    cols = [account.c[c] for c in ACCOUNT_COLUMNS]
    rows = conn.execute(
        select(*cols)
        .where(where_run(account, run_id, mode))
        .order_by(account.c.time.desc(), account.c.id.desc())
        .limit(limit)
    )
    return _frame(rows, ACCOUNT_COLUMNS).iloc[::-1].reset_index(drop=True)


def new_account(
    conn: Connection, run_id: str, mode: str, after_id: int, limit: int
) -> pd.DataFrame:
    compact = _compact(conn, run_id, mode, ACCOUNT_COLUMNS[2:])
    if compact is not None:
        return compact.iloc[after_id : after_id + limit].reset_index(drop=True)[
            list(ACCOUNT_COLUMNS)
        ]
    return _rows_after(conn, account, ACCOUNT_COLUMNS, run_id, mode, after_id, limit)


def daily_pnl(conn: Connection, run_id: str, mode: str) -> pd.DataFrame:
    """Realised PnL and trade count per UTC day of exit (bar time): one grouped query."""
    day = func.date(trades.c.exit_time)
    rows = conn.execute(
        select(day, func.sum(trades.c.pnl), func.count())
        .where(where_run(trades, run_id, mode))
        .group_by(day)
        .order_by(day)
    ).all()
    frame = pd.DataFrame([tuple(r) for r in rows], columns=["day", "pnl", "trades"])
    frame["day"] = pd.to_datetime(frame["day"].astype(str))
    return frame


def recent_trades(conn: Connection, run_id: str, mode: str, limit: int) -> pd.DataFrame:
    cols = [trades.c[c] for c in TRADE_COLUMNS]
    rows = conn.execute(
        select(*cols)
        .where(where_run(trades, run_id, mode))
        .order_by(trades.c.exit_time.desc(), trades.c.id.desc())
        .limit(limit)
    )
    return _frame(rows, TRADE_COLUMNS).iloc[::-1].reset_index(drop=True)


def new_trades(conn: Connection, run_id: str, mode: str, after_id: int, limit: int) -> pd.DataFrame:
    return _rows_after(conn, trades, TRADE_COLUMNS, run_id, mode, after_id, limit)


def open_positions(
    conn: Connection, run_id: str, mode: str, entered_since: datetime | None
) -> pd.DataFrame:
    """Open positions; `entered_since` bounds the index range to what can still be open."""
    cols = [positions.c[c] for c in POSITION_COLUMNS]
    query = select(*cols).where(where_run(positions, run_id, mode), positions.c.status == "open")
    if entered_since is not None:
        query = query.where(positions.c.entry_time >= entered_since)
    rows = conn.execute(query.order_by(positions.c.entry_time))
    return _frame(rows, POSITION_COLUMNS)


def latest_position_entry(conn: Connection, run_id: str, mode: str) -> datetime | None:
    row = conn.execute(
        select(positions.c.entry_time)
        .where(where_run(positions, run_id, mode))
        .order_by(positions.c.entry_time.desc())
        .limit(1)
    ).first()
    return None if row is None else row[0]


def recent_events(
    conn: Connection,
    session_id: str,
    severities: list[str] | None,
    limit: int,
    hidden_types: frozenset[str] = frozenset(),
) -> pd.DataFrame:
    cols = [events.c[c] for c in EVENT_COLUMNS]
    query = select(*cols).where(events.c.session_id == session_id)
    if severities is not None:
        query = query.where(events.c.severity.in_(severities))
    if hidden_types:
        query = query.where(events.c.event_type.not_in(sorted(hidden_types)))
    rows = conn.execute(query.order_by(events.c.timestamp.desc(), events.c.id.desc()).limit(limit))
    return _frame(rows, EVENT_COLUMNS).iloc[::-1].reset_index(drop=True)


def new_events(
    conn: Connection, session_id: str, after_id: int, severities: list[str] | None, limit: int
) -> pd.DataFrame:
    cols = [events.c[c] for c in EVENT_COLUMNS]
    query = select(*cols).where(
        events.c.id > after_id, _no_index(events.c.session_id) == session_id
    )
    if severities is not None:
        query = query.where(events.c.severity.in_(severities))
    return _frame(conn.execute(query.order_by(events.c.id).limit(limit)), EVENT_COLUMNS)


def last_event(conn: Connection, session_id: str) -> tuple[int, Any] | None:
    """(id, timestamp) of the session's newest event."""
    row = conn.execute(
        select(events.c.id, events.c.timestamp)
        .where(events.c.session_id == session_id)
        .order_by(events.c.timestamp.desc(), events.c.id.desc())
        .limit(1)
    ).first()
    return None if row is None else (int(row[0]), row[1])


def event_counts(conn: Connection, session_id: str, last_n: int) -> dict[str, int]:
    """Events per severity among the session's newest `last_n` (a bounded index walk)."""
    recent = (
        select(events.c.severity)
        .where(events.c.session_id == session_id)
        .order_by(events.c.timestamp.desc())
        .limit(last_n)
        .subquery()
    )
    rows = conn.execute(select(recent.c.severity, func.count()).group_by(recent.c.severity))
    return {str(sev): int(n) for sev, n in rows}


def heartbeat(conn: Connection, run_id: str) -> dict[str, Any] | None:
    """The session's `run_heartbeats` row (one primary-key lookup), if the loop wrote one."""
    from atb.db.models.heartbeats import RunHeartbeat

    table = cast(Table, RunHeartbeat.__table__)
    row = conn.execute(select(table).where(table.c.run_id == run_id)).first()
    return None if row is None else dict(row._mapping)


def heartbeats(conn: Connection, run_ids: list[str]) -> dict[str, dict[str, Any]]:
    """`run_heartbeats` rows of several sessions, by run id (one query)."""
    from atb.db.models.heartbeats import RunHeartbeat

    table = cast(Table, RunHeartbeat.__table__)
    rows = conn.execute(select(table).where(table.c.run_id.in_(run_ids)))
    return {row.run_id: dict(row._mapping) for row in rows}
