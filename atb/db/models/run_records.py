"""Run records: one `runs` row per backtest / paper / live session, and what it produced.

Every child row carries `run_id` (a paper/live "trading session" is a run too; logs call it
`session_id`) and the run's `mode`, so dashboards never mix backtest rows with live ones
even without a join. Indexes are (run_id, time): every dashboard query is "this run, over
time". Times are UTC. Numbers are floats: they are simulation/report values, not ledger
amounts. JSON columns become JSONB on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from atb.db.models.base import Base, utcnow

BigId = BigInteger().with_variant(Integer(), "sqlite")
Json = JSON().with_variant(JSONB(), "postgresql")
RunId = String(64)


class RunChild:
    """A row of one run: its id, the run it belongs to (deleted with it) and the run's
    mode, before the table's own columns."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True, sort_order=-3)
    run_id: Mapped[str] = mapped_column(
        RunId, ForeignKey("runs.id", ondelete="CASCADE"), sort_order=-2
    )
    mode: Mapped[str] = mapped_column(String(16), sort_order=-1)


class Run(Base):
    """One run. `status`: running -> finished | failed (with `error`)."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(RunId, primary_key=True)
    mode: Mapped[str] = mapped_column(String(16))
    strategy: Mapped[str | None] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16), default="running")
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    config: Mapped[dict[str, Any]] = mapped_column(Json)
    """The resolved config, secrets redacted."""
    overrides: Mapped[list[str]] = mapped_column(Json, default=list)
    parameters: Mapped[dict[str, Any] | None] = mapped_column(Json)
    """The strategy's own settings, for comparing sweep jobs."""
    data_fingerprint: Mapped[str | None] = mapped_column(String(64))
    data_source: Mapped[str | None] = mapped_column(Text)
    data_start: Mapped[datetime | None] = mapped_column()
    data_end: Mapped[datetime | None] = mapped_column()
    bars: Mapped[int | None] = mapped_column(Integer)
    code_version: Mapped[str | None] = mapped_column(String(96))
    sweep_id: Mapped[str | None] = mapped_column(Text)
    job_num: Mapped[int | None] = mapped_column(Integer)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(Json)
    result_hash: Mapped[str | None] = mapped_column(String(64))
    """sha256 of trades + metrics: the same config and data give the same hash."""

    __table_args__ = (
        Index("ix_runs_started_at", "started_at"),
        Index("ix_runs_mode_started_at", "mode", "started_at"),
        Index("ix_runs_strategy", "strategy"),
    )


class TradeRecord(RunChild, Base):
    """A closed round trip; pnl net of both fees."""

    __tablename__ = "trades"

    trade_no: Mapped[int] = mapped_column(Integer)
    position_no: Mapped[int] = mapped_column(Integer)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))  # long | short
    qty: Mapped[float] = mapped_column(Float)
    entry_time: Mapped[datetime] = mapped_column()
    entry_price: Mapped[float] = mapped_column(Float)
    exit_time: Mapped[datetime] = mapped_column()
    exit_price: Mapped[float] = mapped_column(Float)
    fees: Mapped[float] = mapped_column(Float)
    pnl: Mapped[float] = mapped_column(Float)
    return_pct: Mapped[float] = mapped_column(Float)
    exit_reason: Mapped[str] = mapped_column(String(32))
    bars_held: Mapped[int] = mapped_column(Integer)

    __table_args__ = (Index("ix_trades_run_id_exit_time", "run_id", "exit_time"),)


class OrderRecord(RunChild, Base):
    __tablename__ = "orders"

    order_no: Mapped[int] = mapped_column(Integer)
    symbol: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column()
    side: Mapped[str] = mapped_column(String(8))  # buy | sell
    kind: Mapped[str] = mapped_column(String(8))  # entry | exit
    order_type: Mapped[str] = mapped_column(String(16), default="market")
    reason: Mapped[str] = mapped_column(String(32))  # signal | stop_loss | take_profit | ...
    status: Mapped[str] = mapped_column(String(16))  # pending | filled | rejected | cancelled
    size: Mapped[float | None] = mapped_column(Float)  # entries: fraction of balance
    filled_at: Mapped[datetime | None] = mapped_column()
    qty: Mapped[float | None] = mapped_column(Float)
    price: Mapped[float | None] = mapped_column(Float)
    fee: Mapped[float | None] = mapped_column(Float)
    position_no: Mapped[int | None] = mapped_column(Integer)
    exchange_order_id: Mapped[str | None] = mapped_column(String(64))  # live only
    note: Mapped[str | None] = mapped_column(Text)
    """Why: the fill's client order id, or for a rejection the exchange's message (or the
    local risk check that refused it)."""
    error_code: Mapped[str | None] = mapped_column(String(64))
    """A rejection's exchange error code as ccxt reports it (Binance: "-2010"); NULL for
    fills and for orders refused locally before reaching the exchange."""

    __table_args__ = (Index("ix_orders_run_id_created_at", "run_id", "created_at"),)


class PositionRecord(RunChild, Base):
    """A position's lifecycle; live dashboards read `status = 'open'` rows."""

    __tablename__ = "positions"

    position_no: Mapped[int] = mapped_column(Integer)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    qty: Mapped[float] = mapped_column(Float)
    entry_time: Mapped[datetime] = mapped_column()
    entry_price: Mapped[float] = mapped_column(Float)
    stop_loss: Mapped[float | None] = mapped_column(Float)  # price level
    take_profit: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(8))  # open | closed
    closed_at: Mapped[datetime | None] = mapped_column()
    exit_price: Mapped[float | None] = mapped_column(Float)
    realized_pnl: Mapped[float | None] = mapped_column(Float)
    last_price: Mapped[float | None] = mapped_column(Float)
    unrealized_pnl: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (Index("ix_positions_run_id_entry_time", "run_id", "entry_time"),)


class AccountSnapshot(RunChild, Base):
    """Balance (realized), equity (marked to close), drawdown and exposure, one row per bar."""

    __tablename__ = "account_history"

    time: Mapped[datetime] = mapped_column()
    balance: Mapped[float] = mapped_column(Float)
    equity: Mapped[float] = mapped_column(Float)
    drawdown: Mapped[float] = mapped_column(Float)
    position_qty: Mapped[float] = mapped_column(Float)  # signed: > 0 long, < 0 short
    # Rows written before migration 0004 get the count from position_qty (one net
    # position per symbol), hence the server default for the backfill.
    open_positions: Mapped[int] = mapped_column(Integer, server_default="0")
    exposure: Mapped[float | None] = mapped_column(Float)
    """Gross position notional / equity, both marked to the bar's close: 0 flat, 1.0 fully
    invested, > 1 leveraged (notional = exposure × equity). NULL when equity <= 0, and on
    rows written before migration 0004 (no price was stored to compute it from)."""

    __table_args__ = (Index("ix_account_history_run_id_time", "run_id", "time"),)


class DecisionRecordRow(RunChild, Base):
    """Every non-HOLD signal and what the engine did about it (why, when size is 0)."""

    __tablename__ = "decisions"

    time: Mapped[datetime] = mapped_column()
    signal: Mapped[int] = mapped_column(SmallInteger)  # +1 buy, -1 sell
    confidence: Mapped[float | None] = mapped_column(Float)
    action: Mapped[str] = mapped_column(String(24))
    size: Mapped[float] = mapped_column(Float)
    reason: Mapped[str | None] = mapped_column(Text)
    price: Mapped[float] = mapped_column(Float)

    __table_args__ = (Index("ix_decisions_run_id_time", "run_id", "time"),)


class PredictionRecord(RunChild, Base):
    """One model prediction (the market_prediction dashboard)."""

    __tablename__ = "predictions"

    time: Mapped[datetime] = mapped_column()
    predicted_price: Mapped[float | None] = mapped_column(Float)
    r: Mapped[float | None] = mapped_column(Float)  # predicted return
    confidence: Mapped[float | None] = mapped_column(Float)
    direction: Mapped[int | None] = mapped_column(SmallInteger)
    model_id: Mapped[str | None] = mapped_column(String(128))

    __table_args__ = (Index("ix_predictions_run_id_time", "run_id", "time"),)


class RunSeries(RunChild, Base):
    """One per-bar column of a run, stored whole and compressed (atb/db/series.py).

    A backtest's per-bar series (account: time, balance, equity, drawdown, position_qty,
    open_positions, exposure; predictions: time, predicted_price, r, confidence,
    direction, model_id; decisions: the `decisions` table's columns) are
    a few blobs per run instead of a row per bar: a 1M-bar run adds megabytes, not hundreds
    of megabytes, and is written in tens of milliseconds. Live/paper runs still append
    `account_history`/`predictions`/`decisions` rows as bars arrive.
    """

    __tablename__ = "run_series"

    series: Mapped[str] = mapped_column(String(32))  # "account" | "predictions" | "decisions"
    column: Mapped[str] = mapped_column(String(32))
    length: Mapped[int] = mapped_column(Integer)
    codec: Mapped[str] = mapped_column(String(32))
    data: Mapped[bytes] = mapped_column(LargeBinary)

    __table_args__ = (
        Index("ix_run_series_run_id_series_column", "run_id", "series", "column", unique=True),
    )


__all__ = [
    "AccountSnapshot",
    "DecisionRecordRow",
    "OrderRecord",
    "PositionRecord",
    "PredictionRecord",
    "Run",
    "RunSeries",
    "TradeRecord",
]
