"""Whole-session views (the downsampled curve, PnL per day, the status board), cached per
(database, session) and brought forward from the last row each one has seen.

Reading a long session's account history, trades and events once costs a second or more;
every later browser session (and every page reload) starts from the cached view and reads
only the rows written since, so a page opened on a month-old session paints as fast as one
on a new session. Like the KPI aggregates, a copy is handed out: sessions never share
mutable state.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

import pandas as pd
from sqlalchemy import Engine

from atb.dashboards import charts
from atb.dashboards.monitoring import queries as q
from atb.dashboards.monitoring.status import StatusBoard, status_events

_CACHE: dict[tuple[str, str], SessionViews] = {}
_LOCK = threading.Lock()


@dataclass
class SessionViews:
    curve: pd.DataFrame = field(default_factory=pd.DataFrame)
    account_id: int = 0
    daily: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame({"day": [], "pnl": [], "trades": []})
    )
    trade_id: int = 0
    board: StatusBoard = field(default_factory=StatusBoard)


def session_views(engine: Engine, run_id: str, mode: str) -> SessionViews:
    """The session's views, current to now."""
    key = (str(engine.url), run_id)
    with _LOCK:
        views = copy.deepcopy(_CACHE.get(key)) or SessionViews()
    with engine.connect() as conn:
        if views.account_id == 0:  # first read: the session's index range, whole
            new_account = q.recent_account(conn, run_id, mode, 10**9)
        else:
            new_account = q.new_account(conn, run_id, mode, views.account_id, 10**9)
        if len(new_account):
            curve = pd.concat([views.curve, new_account], ignore_index=True)
            views.curve = charts.downsample(curve, "equity")
            views.account_id = int(new_account["id"].max())
        if views.trade_id == 0:  # first read: one grouped query, not every trade row
            views.daily = q.daily_pnl(conn, run_id, mode)
            views.trade_id = int(q.trade_stats(conn, run_id, mode)["last_id"] or 0)
        else:
            new_trades = q.new_trades(conn, run_id, mode, views.trade_id, 10**9)
            if len(new_trades):
                views.daily = add_daily(views.daily, new_trades)
                views.trade_id = int(new_trades["id"].max())
        views.board.fold(status_events(conn, run_id, views.board.max_id))
    with _LOCK:
        _CACHE[key] = copy.deepcopy(views)
    return views


def add_daily(daily: pd.DataFrame, trades: pd.DataFrame) -> pd.DataFrame:
    """Fold trades into the per-day realised PnL (day of exit, bar time, UTC)."""
    if not len(trades):
        return daily
    exits = pd.to_datetime(trades["exit_time"], utc=True, format="mixed").dt.tz_localize(None)
    pnl = pd.to_numeric(trades["pnl"], errors="coerce").fillna(0.0)
    new = pd.DataFrame({"day": exits.dt.normalize(), "pnl": pnl, "trades": 1})
    both = pd.concat([daily, new], ignore_index=True) if len(daily) else new
    out = both.groupby("day", as_index=False)[["pnl", "trades"]].sum()
    return out.astype({"pnl": float, "trades": int})
