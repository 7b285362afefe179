"""The tables the dashboards read, as SQLAlchemy Core `Table`s, plus small shared queries.

Dashboards only ever issue Core selects with index-friendly WHERE clauses on
(run_id | session_id, time) and a LIMIT: a 1 000 000-row event table costs the same as a
1 000-row one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Table, and_, exists, or_, select

from atb.db.models.run_records import (
    AccountSnapshot,
    OrderRecord,
    PositionRecord,
    PredictionRecord,
    Run,
    TradeRecord,
)
from atb.db.models.system_events import SystemEvent
from atb.db.series import PREDICTIONS, run_series

runs: Table = Run.__table__  # type: ignore[assignment]
trades: Table = TradeRecord.__table__  # type: ignore[assignment]
orders: Table = OrderRecord.__table__  # type: ignore[assignment]
positions: Table = PositionRecord.__table__  # type: ignore[assignment]
account: Table = AccountSnapshot.__table__  # type: ignore[assignment]
predictions: Table = PredictionRecord.__table__  # type: ignore[assignment]
events: Table = SystemEvent.__table__  # type: ignore[assignment]

MODES = ("paper", "live", "backtest")


def utc(value: Any) -> datetime | None:
    """SQLite returns naive datetimes (stored as UTC); PostgreSQL aware ones. Missing values
    (None, and the NaT pandas puts in a datetime column for a failed or running job) are
    None: NaT is truthy and has no strftime."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def naive_utc(series: pd.Series) -> pd.Series:
    """A datetime column as tz-naive UTC datetime64 (what Bokeh's datetime axes expect)."""
    converted = pd.to_datetime(series, utc=True, format="mixed")
    return converted.dt.tz_localize(None)


def list_runs(
    conn: Connection,
    mode: str | None = None,
    limit: int = 200,
    with_predictions: bool = False,
) -> list[dict[str, Any]]:
    """Newest runs first (index ix_runs_mode_started_at), optionally only one mode."""
    cols = [
        runs.c.id,
        runs.c.mode,
        runs.c.strategy,
        runs.c.symbol,
        runs.c.timeframe,
        runs.c.status,
        runs.c.started_at,
        runs.c.finished_at,
    ]
    query = select(*cols).order_by(runs.c.started_at.desc()).limit(limit)
    if mode is not None:
        query = query.where(runs.c.mode == mode)
    if with_predictions:
        # Backtests keep predictions as compressed columns (run_series), live runs as rows.
        query = query.where(
            or_(
                exists().where(predictions.c.run_id == runs.c.id),
                exists().where(
                    and_(run_series.c.run_id == runs.c.id, run_series.c.series == PREDICTIONS)
                ),
            )
        )
    return [dict(row._mapping) for row in conn.execute(query)]


def run_label(run: dict[str, Any]) -> str:
    started = utc(run.get("started_at"))
    when = started.strftime("%Y-%m-%d %H:%M") if started else "?"
    return (
        f"{when} · {run.get('mode')} · {run.get('strategy') or '-'} · {run.get('symbol')} "
        f"· {run.get('status')} · {str(run['id'])[:8]}"
    )


def get_run(conn: Connection, run_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
    return None if row is None else dict(row._mapping)


def where_run(table: Table, run_id: str, mode: str) -> Any:
    """Every child query names both: a run id can never pull another mode's rows."""
    return and_(table.c.run_id == run_id, table.c.mode == mode)
