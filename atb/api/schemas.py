"""The JSON API's answers, one pydantic model per endpoint, published as JSON Schema.

The names are the original's (`/api/metrics`, `/api/positions`, `/api/trades`,
`/api/balance`, `/api/system/status`), so scripts that polled it keep their URLs. Every
answer names the run it describes (`run_id`); lists are pages (`total`, `limit`,
`offset`, `items`). Times are ISO 8601 UTC; money is in the quote currency.

`GET /api/schema/<name>` and `atb api schema <name>` print a model's JSON Schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunRef(ApiModel):
    run_id: str
    mode: str = Field(description="backtest | paper | live")
    strategy: str | None
    symbol: str
    timeframe: str
    status: str = Field(description="the run row's status: running | finished | failed | ...")
    started_at: datetime
    finished_at: datetime | None


class Trade(ApiModel):
    """One closed round trip."""

    trade_no: int
    position_no: int
    symbol: str
    side: str = Field(description="long | short")
    entry_time: datetime
    entry_price: float
    exit_time: datetime
    exit_price: float
    qty: float
    fees: float
    pnl: float = Field(description="net of fees")
    return_pct: float
    exit_reason: str
    bars_held: int


class Position(ApiModel):
    position_no: int
    symbol: str
    side: str = Field(description="long | short")
    qty: float
    status: str = Field(description="open | closed")
    entry_time: datetime
    entry_price: float
    stop_loss: float | None
    take_profit: float | None
    last_price: float | None
    unrealized_pnl: float | None
    closed_at: datetime | None
    exit_price: float | None
    realized_pnl: float | None


class Page(ApiModel):
    run_id: str
    total: int = Field(description="rows matching, across all pages")
    limit: int
    offset: int


class TradesPage(Page):
    """`GET /api/trades?limit=&offset=&run_id=`: newest first."""

    items: list[Trade]


class PositionsPage(Page):
    """`GET /api/positions?status=open|closed|all&limit=&offset=&run_id=`: newest first."""

    status: str
    items: list[Position]


class Balance(ApiModel):
    """`GET /api/balance?run_id=`: the run's latest account snapshot."""

    run_id: str
    time: datetime | None = Field(description="bar time of the snapshot; null before the first")
    balance: float | None = Field(description="free quote balance")
    equity: float | None = Field(description="balance plus open positions at market")
    drawdown: float | None = Field(description="from peak equity, 0.1 = 10 %")
    open_positions: int
    exposure: float | None
    initial_equity: float | None = Field(description="equity of the first snapshot")


class Metrics(ApiModel):
    """`GET /api/metrics?run_id=`: performance so far."""

    run: RunRef
    trades: int
    wins: int
    losses: int
    win_rate: float | None = Field(description="wins / trades, 0..1; null without trades")
    realized_pnl: float
    fees: float
    profit_factor: float | None = Field(description="gross profit / gross loss")
    equity: float | None
    total_return: float | None = Field(description="equity / initial equity - 1")
    max_drawdown: float | None = Field(description="0.1 = 10 %")
    open_positions: int
    run_metrics: dict[str, Any] | None = Field(
        description="the metrics the run stored when it finished (backtests, sweeps)"
    )


class Loop(ApiModel):
    state: str = Field(
        description="starting | running | degraded | stalled | not_started | stopping | stopped"
    )
    reason: str | None
    iterations: int | None
    last_beat_at: datetime | None
    source: str = Field(description="process: the running session itself; database: its row")


class SystemStatus(ApiModel):
    """`GET /api/system/status?run_id=`: is the session trading, and can we reach the DB."""

    status: str = Field(description="healthy | degraded | unhealthy")
    timestamp: datetime
    run: RunRef
    loop: Loop | None = Field(description="null for runs without a loop (backtests)")
    database: dict[str, Any]
    version: str


class ApiError(ApiModel):
    """Every error: one line, no traceback."""

    status: str = "error"
    code: int
    error: str


SCHEMAS: dict[str, type[ApiModel]] = {
    "metrics": Metrics,
    "positions": PositionsPage,
    "trades": TradesPage,
    "balance": Balance,
    "system_status": SystemStatus,
    "error": ApiError,
}
"""Schema name -> model (`/api/schema/<name>`)."""


def json_schema(name: str) -> dict[str, Any]:
    model = SCHEMAS.get(name)
    if model is None:
        raise KeyError(f"no schema '{name}' (one of: {', '.join(SCHEMAS)})")
    return model.model_json_schema()
