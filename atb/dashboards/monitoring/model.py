"""The monitoring view model: KPIs and tables for one session, kept current incrementally.

`load()` reads a bounded snapshot (aggregates once, the last N rows of each table);
`poll()` reads only rows with an id above the last one seen and folds them into running
aggregates (win rate, PnL, Sharpe, max drawdown), so one periodic update costs a few index
range scans however long the session has been running. No Panel import here: the model is
tested on a seeded database without a browser.
"""

from __future__ import annotations

import copy
import math
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
from sqlalchemy import Engine, inspect

from atb.dashboards.monitoring import queries as q
from atb.dashboards.monitoring.events import event_frame
from atb.dashboards.monitoring.history import SessionViews, session_views
from atb.dashboards.monitoring.liveness import session_liveness
from atb.dashboards.monitoring.status import StatusBoard, relevant
from atb.dashboards.tables import get_run, list_runs, naive_utc, utc

SEVERITIES = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
HIDDEN_BY_DEFAULT = frozenset({"DECISION"})
"""Event types the events table leaves out unless asked: one DECISION row per signal floods
it (the decisions are in the `decisions` table)."""
COUNT_WINDOW = 1000
"""Severity counts cover the session's newest this-many events."""

# Whole-session aggregates (win rate, Sharpe sums, max drawdown) keyed by (database, run):
# computing them reads every row of the session once; afterwards every browser session
# starts from the cached figures and folds in only rows newer than the cached ids.
_AGGREGATES: dict[tuple[str, str], _Running] = {}
_AGG_LOCK = threading.Lock()
YEAR_S = 365 * 24 * 3600
SHARPE_MIN_DAYS = 30
SHARPE_MIN_RETURNS = 30
"""An annualised Sharpe needs this much history: a day of 1m bars annualises to 30+."""


def bar_seconds(timeframe: str | None) -> float:
    from atb.data.loader import timeframe_delta

    try:
        delta = timeframe_delta(timeframe or "1h")
    except Exception:
        delta = None
    return delta.total_seconds() if delta is not None else 3600.0


@dataclass
class Kpis:
    balance: float | None = None
    equity: float | None = None
    pnl_today: float | None = None
    pnl_total: float | None = None
    drawdown: float | None = None
    max_drawdown: float | None = None
    win_rate: float | None = None
    sharpe: float | None = None
    sharpe_note: str = ""
    exposure: float | None = None
    trades: int = 0
    open_positions: int = 0
    last_bar: datetime | None = None
    last_event: datetime | None = None
    status: str | None = None
    health: str = "unknown"
    health_reason: str = ""
    heartbeat_at: datetime | None = None
    errors_recent: int = 0
    warnings_recent: int = 0


@dataclass
class Snapshot:
    kpis: Kpis
    account: pd.DataFrame
    trades: pd.DataFrame
    positions: pd.DataFrame
    events: pd.DataFrame


@dataclass
class Update:
    kpis: Kpis
    account: pd.DataFrame
    trades: pd.DataFrame
    positions: pd.DataFrame
    events: pd.DataFrame
    seconds: float = 0.0


@dataclass
class _Running:
    """Aggregates folded forward row by row."""

    trades: int = 0
    wins: int = 0
    pnl: float = 0.0
    last_trade_id: int = 0
    last_account_id: int = 0
    last_event_id: int = 0
    last_event_at: datetime | None = None
    max_drawdown: float = 0.0
    n: int = 0
    r_sum: float = 0.0
    r_sumsq: float = 0.0
    last_equity: float | None = None
    last_row: dict[Hashable, Any] = field(default_factory=dict)
    initial_balance: float | None = None
    day: Any = None
    day_start_equity: float | None = None
    positions_since: datetime | None = None
    first_time: datetime | None = None
    counts_at: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


class MonitoringModel:
    """One session (a run of mode paper, live or backtest: never mixed)."""

    def __init__(
        self,
        engine: Engine,
        run_id: str,
        chart_points: int = 2000,
        table_rows: int = 50,
        event_rows: int = 100,
        severities: list[str] | None = None,
    ) -> None:
        self.engine = engine
        self.run_id = run_id
        self.chart_points = chart_points
        self.table_rows = table_rows
        self.event_rows = event_rows
        self.severities = severities
        self.hidden_types: frozenset[str] = HIDDEN_BY_DEFAULT
        with engine.connect() as conn:
            run = get_run(conn, run_id)
        if run is None:
            raise LookupError(f"no run {run_id}")
        self.run = run
        self.mode = str(run["mode"])
        self.bar_s = bar_seconds(run.get("timeframe"))
        self.state = _Running()
        self.board: StatusBoard | None = None
        self.heartbeat: dict[str, Any] | None = None
        # Databases from before migration 0005 have no heartbeat table: fall back to events.
        self.has_heartbeats = self.mode != "backtest" and inspect(engine).has_table(
            "run_heartbeats"
        )

    # -- snapshot --------------------------------------------------------------------
    def load(self) -> Snapshot:
        rid, mode = self.run_id, self.mode
        key = (str(self.engine.url), rid)
        with _AGG_LOCK:
            cached = copy.deepcopy(_AGGREGATES.get(key))
        with self.engine.connect() as conn:
            if cached is not None:
                st = self.state = cached
                # Catch up from the cached ids with the streaming path.
                self._fold_trades(q.new_trades(conn, rid, mode, st.last_trade_id, 10**9))
                self._fold_account(conn, q.new_account(conn, rid, mode, st.last_account_id, 10**9))
            else:
                st = self.state = _Running()
                ts = q.trade_stats(conn, rid, mode)
                st.trades, st.wins, st.pnl = ts["count"], ts["wins"], float(ts["pnl"])
                st.last_trade_id = ts["last_id"] or 0
                acc = q.account_stats(conn, rid, mode)
                st.max_drawdown = float(acc["max_drawdown"])
                st.last_account_id = acc["last_id"] or 0
                st.n, st.r_sum, st.r_sumsq = acc["n"], float(acc["sum"]), float(acc["sumsq"])
                first = q.first_account_row(conn, rid, mode)
                st.initial_balance = None if first is None else float(first.balance)
                st.first_time = None if first is None else utc(first.time)
            account = q.recent_account(conn, rid, mode, self.chart_points)
            if len(account):
                st.last_row = account.iloc[-1].to_dict()
                st.last_equity = float(st.last_row["equity"])
                st.day = None
                self._reset_day(conn, utc(st.last_row["time"]))
            trades = q.recent_trades(conn, rid, mode, self.table_rows)
            st.positions_since = self._positions_floor(conn, None)
            positions = q.open_positions(conn, rid, mode, st.positions_since)
            st.positions_since = self._positions_floor(conn, positions)
            last = q.last_event(conn, rid)
            if last is not None:
                st.last_event_id, st.last_event_at = last[0], utc(last[1])
            events = q.recent_events(conn, rid, self.severities, self.event_rows, self.hidden_types)
            self._refresh_counts(conn, force=True)
            self._refresh_run(conn)
        self._remember()
        return Snapshot(
            kpis=self.kpis(positions),
            account=self.account_frame(account),
            trades=self.trade_frame(trades),
            positions=self.position_frame(positions),
            events=self.event_frame(events),
        )

    def _remember(self) -> None:
        with _AGG_LOCK:
            _AGGREGATES[(str(self.engine.url), self.run_id)] = copy.deepcopy(self.state)

    def _positions_floor(self, conn: Any, open_now: pd.DataFrame | None) -> datetime | None:
        """The earliest entry time an open position can have from now on."""
        if open_now is not None and len(open_now):
            return utc(open_now["entry_time"].min())
        latest = q.latest_position_entry(conn, self.run_id, self.mode)
        return utc(latest) if latest is not None else None

    def _reset_day(self, conn: Any, now: datetime | None) -> None:
        if now is None:
            return
        day = now.date()
        if self.state.day == day:
            return
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        row = q.first_account_row(conn, self.run_id, self.mode, since=start)
        self.state.day = day
        self.state.day_start_equity = None if row is None else float(row.equity)

    def _refresh_counts(self, conn: Any, force: bool = False) -> None:
        # Severity counts over the newest COUNT_WINDOW events: bounded however many events
        # the session has; recounted once a minute, new events are added in between.
        if not force and time.monotonic() - self.state.counts_at < 60:
            return
        self.state.counts = q.event_counts(conn, self.run_id, COUNT_WINDOW)
        self.state.counts_at = time.monotonic()

    def _refresh_run(self, conn: Any) -> None:
        run = get_run(conn, self.run_id)
        if run is not None:
            self.run = run
        if self.has_heartbeats:
            self.heartbeat = q.heartbeat(conn, self.run_id)

    # -- streaming -------------------------------------------------------------------
    def poll(self) -> Update:
        """Only rows newer than the last seen ids, plus the (small) open-position set."""
        t0 = time.perf_counter()
        st = self.state
        rid, mode = self.run_id, self.mode
        with self.engine.connect() as conn:
            account = q.new_account(conn, rid, mode, st.last_account_id, self.chart_points)
            trades = q.new_trades(conn, rid, mode, st.last_trade_id, self.table_rows * 20)
            events = q.new_events(conn, rid, st.last_event_id, None, self.event_rows * 20)
            positions = q.open_positions(conn, rid, mode, st.positions_since)
            self._fold_account(conn, account)
            self._fold_trades(trades)
            if len(events):
                if self.board is not None:
                    self.board.fold(relevant(events))
                st.last_event_id = int(events["id"].max())
                st.last_event_at = utc(events["timestamp"].iloc[-1])
                self._count_events(events)
                if self.severities is not None:
                    events = events[events["severity"].isin(self.severities)]
                if self.hidden_types:
                    events = events[~events["event_type"].isin(self.hidden_types)]
            st.positions_since = self._positions_floor(conn, positions)
            # Every poll: a run that ends, or a process that dies, writes no new rows; the
            # run row and the heartbeat row are two primary-key lookups.
            self._refresh_run(conn)
        self._remember()
        update = Update(
            kpis=self.kpis(positions),
            account=self.account_frame(account),
            trades=self.trade_frame(trades.tail(self.table_rows)),
            positions=self.position_frame(positions),
            events=self.event_frame(events.tail(self.event_rows)),
        )
        update.seconds = time.perf_counter() - t0
        return update

    def _fold_account(self, conn: Any, account: pd.DataFrame) -> None:
        if not len(account):
            return
        st = self.state
        equity = account["equity"].astype(float).to_numpy()
        prev = st.last_equity
        for value in equity:
            if prev is not None and prev != 0:
                r = float(value / prev - 1.0)
                st.n += 1
                st.r_sum += r
                st.r_sumsq += r * r
            prev = float(value)
        st.last_equity = prev
        st.max_drawdown = max(st.max_drawdown, float(account["drawdown"].max()))
        st.last_account_id = int(account["id"].max())
        st.last_row = account.iloc[-1].to_dict()
        if st.initial_balance is None:
            st.initial_balance = float(account.iloc[0]["balance"])
            st.first_time = utc(account.iloc[0]["time"])
        self._reset_day(conn, utc(st.last_row["time"]))

    def _fold_trades(self, trades: pd.DataFrame) -> None:
        if not len(trades):
            return
        st = self.state
        pnl = trades["pnl"].astype(float)
        st.trades += len(trades)
        st.wins += int((pnl > 0).sum())
        st.pnl += float(pnl.sum())
        st.last_trade_id = int(trades["id"].max())

    def _count_events(self, events: pd.DataFrame) -> None:
        for severity, n in events["severity"].value_counts().items():
            self.state.counts[str(severity)] = self.state.counts.get(str(severity), 0) + int(n)

    def set_severities(self, severities: list[str] | None) -> pd.DataFrame:
        """A new filter re-reads the last N matching events (one bounded query)."""
        self.severities = severities
        with self.engine.connect() as conn:
            return self.event_frame(
                q.recent_events(conn, self.run_id, severities, self.event_rows, self.hidden_types)
            )

    def set_hidden_types(self, hidden: frozenset[str]) -> pd.DataFrame:
        self.hidden_types = hidden
        return self.set_severities(self.severities)

    # -- view ------------------------------------------------------------------------
    def kpis(self, positions: pd.DataFrame) -> Kpis:
        st = self.state
        row = st.last_row
        k = Kpis(trades=st.trades, status=str(self.run.get("status")), last_event=st.last_event_at)
        if row:
            k.balance = float(row["balance"])
            k.equity = float(row["equity"])
            k.drawdown = float(row["drawdown"])
            k.max_drawdown = st.max_drawdown
            k.last_bar = utc(row["time"])
            if st.initial_balance:
                k.pnl_total = k.equity - st.initial_balance
            if st.day_start_equity is not None:
                k.pnl_today = k.equity - st.day_start_equity
        if st.trades:
            k.win_rate = st.wins / st.trades
        k.sharpe, k.sharpe_note = self._sharpe(k.last_bar)
        k.open_positions = len(positions)
        if len(positions):
            price = positions["last_price"].fillna(positions["entry_price"]).astype(float)
            k.exposure = float((positions["qty"].astype(float).abs() * price).sum())
        else:
            k.exposure = 0.0
        k.errors_recent = st.counts.get("ERROR", 0) + st.counts.get("CRITICAL", 0)
        k.warnings_recent = st.counts.get("WARNING", 0)
        k.health, k.health_reason = self.health(k)
        return k

    def _sharpe(self, last_bar: datetime | None) -> tuple[float | None, str]:
        """The annualised Sharpe once the session spans SHARPE_MIN_DAYS, else why not."""
        st = self.state
        days = 0.0
        if st.first_time is not None and last_bar is not None:
            days = (last_bar - st.first_time).total_seconds() / 86400
        if days < SHARPE_MIN_DAYS or st.n < SHARPE_MIN_RETURNS:
            return None, f"n/a ({days:,.1f} of {SHARPE_MIN_DAYS} d)"
        return sharpe(st.n, st.r_sum, st.r_sumsq, self.bar_s), ""

    # -- whole-session views (read after first paint) ---------------------------------
    def views(self) -> SessionViews:
        """Curve, daily PnL and status board of the whole session (cached, brought
        forward); from now on `poll` folds new events into this board."""
        views = session_views(self.engine, self.run_id, self.mode)
        self.board = views.board
        return views

    def recent_trades(self, limit: int) -> pd.DataFrame:
        """The session's newest trades (the price chart's markers)."""
        with self.engine.connect() as conn:
            return self.trade_frame(q.recent_trades(conn, self.run_id, self.mode, limit))

    def health(self, k: Kpis) -> tuple[str, str]:
        """Loop health from what the database shows: run status and write recency."""
        status = k.status or "unknown"
        if status == "failed":
            return "failed", str(self.run.get("error") or "the run failed")[:200]
        if status == "finished":
            return "finished", "the session has ended"
        if status != "running":
            return status, ""
        if self.mode == "backtest":
            return "running", "backtest in progress"
        if self.heartbeat is not None:
            label, reason, k.heartbeat_at = session_liveness(self.heartbeat)
            return label, reason
        if self.has_heartbeats:
            started = utc(self.run.get("started_at")) or datetime.now(UTC)
            if (datetime.now(UTC) - started).total_seconds() > 120:
                return "not running", "no heartbeat was ever written for this session"
            return "starting", "waiting for the first heartbeat"
        if k.last_bar is None:
            return "waiting", "no account snapshot yet"
        # Paper replay runs on historical bar times, so staleness is judged by the events'
        # wall-clock timestamps (the journal writes them as they happen), not by bar times.
        if k.last_event is not None:
            age = (datetime.now(UTC) - k.last_event).total_seconds()
            limit = max(300.0, 2 * self.bar_s)
            if age > limit:
                return "stale", f"no event for {age:,.0f} s (expected within {limit:,.0f} s)"
        return "running", "writing account snapshots"

    @staticmethod
    def account_frame(df: pd.DataFrame) -> pd.DataFrame:
        return with_naive_times(df, ("time",))

    @staticmethod
    def trade_frame(df: pd.DataFrame) -> pd.DataFrame:
        return with_naive_times(df, ("entry_time", "exit_time"))

    @staticmethod
    def position_frame(df: pd.DataFrame) -> pd.DataFrame:
        return with_naive_times(df, ("entry_time",))

    @staticmethod
    def event_frame(df: pd.DataFrame) -> pd.DataFrame:
        return event_frame(df)


def with_naive_times(df: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """A copy with the given datetime columns as naive UTC (Bokeh's datetime axes)."""
    out = df.copy()
    if len(out):
        for column in columns:
            out[column] = naive_utc(out[column])
    return out


def sharpe(n: int, total: float, sumsq: float, bar_s: float) -> float | None:
    """Annualised Sharpe of per-bar equity returns (sample std, risk-free 0)."""
    if n < 2:
        return None
    mean = total / n
    var = (sumsq - n * mean * mean) / (n - 1)
    if var <= 1e-18:
        return None
    return mean / math.sqrt(var) * math.sqrt(YEAR_S / bar_s)


def sessions(engine: Engine, mode: str | None, limit: int = 200) -> list[dict[str, Any]]:
    """Newest sessions first. A paper/live run row still saying "running" is re-judged from
    its heartbeat, so the session list does not call a killed session running."""
    with engine.connect() as conn:
        runs = list_runs(conn, mode=mode, limit=limit)
        open_ids = [r["id"] for r in runs if r["status"] == "running" and r["mode"] != "backtest"]
        if not open_ids or not inspect(engine).has_table("run_heartbeats"):
            return runs
        beats = q.heartbeats(conn, open_ids)
    for run in runs:
        hb = beats.get(run["id"])
        if hb is not None and run["status"] == "running":
            run["status"] = session_liveness(hb)[0]
    return runs


def default_session(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A running paper/live session first, else the newest session of any mode."""
    for run in runs:
        if run["status"] == "running" and run["mode"] in ("paper", "live"):
            return run
    for run in runs:
        if run["mode"] in ("paper", "live"):
            return run
    return runs[0] if runs else None
