"""Queries and view models of the backtesting dashboard (no Panel import: unit-tested).

The run registry is the `runs` table (mode = 'backtest' only); a run's curves and trades
are read by (run_id, time) index ranges; candles for the price chart come from the run's
recorded data source when that file is still on disk.
"""

from __future__ import annotations

import json
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, func, select

from atb.dashboards import charts

# re-exported: the market prediction page reads a run's candles through this module
from atb.dashboards.bars import candles_for as candles_for
from atb.dashboards.tables import account, naive_utc, runs, trades, utc, where_run
from atb.db.series import ACCOUNT, DECISIONS, read_series
from atb.engine.report import TRADE_COLUMNS

MODE = "backtest"
METRICS = (
    "total_return",
    "sharpe",
    "max_drawdown",
    "win_rate",
    "num_trades",
    "profit_factor",
    "final_equity",
    "fees_paid",
    "buy_and_hold_return",
)
RUN_COLUMNS = (
    "id",
    "strategy",
    "symbol",
    "timeframe",
    "status",
    "started_at",
    "data_start",
    "data_end",
    "parameters",
    "metrics",
    "sweep_id",
    "job_num",
)
# the columns of a backtest's `export_csv` file, also read from the trades table
TRADE_CSV_COLUMNS = tuple(TRADE_COLUMNS)
MAX_POINTS = charts.MAX_POINTS
SORTS = {
    "newest": ("started_at", False),
    "return": ("total_return", False),
    "Sharpe": ("sharpe", False),
    "max drawdown (least)": ("max_drawdown", True),
    "trades": ("num_trades", False),
    "profit factor": ("profit_factor", False),
}


def _json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def strategy_params(params: Any) -> dict[str, Any] | None:
    """A run's strategy parameters. A job that failed before its strategy was built records
    its overrides instead (`strategy.fast=60`, `db.url=...`): those read as `fast=60`."""
    params = _json(params)
    if not isinstance(params, dict):
        return None
    out = {}
    for key, value in params.items():
        if key.startswith("strategy."):
            out[key.removeprefix("strategy.")] = value
        elif "." not in key and key != "strategy":
            out[key] = value
    return out


def params_text(params: Any, only: set[str] | None = None) -> str:
    fields = strategy_params(params)
    if fields is None:
        return "" if params is None else str(params)
    return ", ".join(f"{k}={v}" for k, v in sorted(fields.items()) if only is None or k in only)


def varying_keys(parameters: Any) -> set[str]:
    """The parameter names whose value differs between the given runs' parameter dicts."""
    dicts = [strategy_params(v) or {} for v in parameters]
    keys = {k for d in dicts for k in d}
    # a key only some runs record (an older run, a default) is not what tells them apart
    return {k for k in keys if len({json.dumps(d[k], default=str) for d in dicts if k in d}) > 1}


def vary_labels(df: pd.DataFrame) -> list[str]:
    """Per run, only the parameters that vary among `df`'s runs of the same strategy
    (defaults and constants left out, so sweep jobs read apart); the strategy when
    nothing varies."""
    labels = [""] * len(df)
    strategies: Any = df["strategy"].fillna("").astype(str).to_numpy() if len(df) else []
    for name in dict.fromkeys(strategies):
        rows = [i for i, s in enumerate(strategies) if s == name]
        params = [df["parameters"].iloc[i] for i in rows]
        keys = varying_keys(params)
        for i, p in zip(rows, params, strict=True):
            labels[i] = params_text(p, keys) or name or "–"
    return labels


def sort_runs(df: pd.DataFrame, by: str) -> pd.DataFrame:
    """Registry order; runs without the metric (no Sharpe, failed jobs) always last."""
    column, ascending = SORTS.get(by, SORTS["newest"])
    if column not in df or not len(df):
        return df
    return df.sort_values(
        column, ascending=ascending, na_position="last", kind="stable"
    ).reset_index(drop=True)


def run_registry(
    conn: Connection,
    strategy: str | None = None,
    symbol: str | None = None,
    status: str | None = None,
    sweep_id: str | None = None,
    text: str = "",
    limit: int = 500,
) -> pd.DataFrame:
    """Backtest runs, newest first, one row each with parameters and key metrics flattened."""
    query = select(*[runs.c[c] for c in RUN_COLUMNS]).where(runs.c.mode == MODE)
    if strategy:
        query = query.where(runs.c.strategy == strategy)
    if symbol:
        query = query.where(runs.c.symbol == symbol)
    if status:
        query = query.where(runs.c.status == status)
    if sweep_id:
        query = query.where(runs.c.sweep_id == sweep_id)
    rows = conn.execute(query.order_by(runs.c.started_at.desc()).limit(limit)).all()
    df = pd.DataFrame([dict(r._mapping) for r in rows], columns=list(RUN_COLUMNS))
    df["params"] = [params_text(p) for p in df["parameters"]]
    metrics = [(_json(m) or {}) for m in df["metrics"]]
    for key in METRICS:
        df[key] = [m.get(key) if isinstance(m, dict) else None for m in metrics]
        df[key] = pd.to_numeric(df[key], errors="coerce")
    period = []
    for start, end in zip(df["data_start"], df["data_end"], strict=True):
        s, e = utc(start), utc(end)
        period.append(f"{s:%Y-%m-%d} → {e:%Y-%m-%d}" if s and e else "")
    df["period"] = period
    df["started_at"] = naive_utc(df["started_at"]) if len(df) else df["started_at"]
    # Labels before the search narrows the list: a search for `fast=60` still shows
    # `fast=60`, not a bare strategy name because nothing varies within one run.
    df["vary"] = vary_labels(df.reset_index(drop=True))
    if text:
        needle = text.lower()
        hay = (
            df["id"].astype(str) + " " + df["strategy"].fillna("") + " " + df["params"]
        ).str.lower()
        df = df[hay.str.contains(needle, regex=False)]
    return df.reset_index(drop=True)


def registry_options(conn: Connection) -> dict[str, list[str]]:
    """Distinct strategies, symbols and sweeps of backtests, for the filter widgets."""
    out: dict[str, list[str]] = {}
    for name in ("strategy", "symbol", "sweep_id"):
        col = runs.c[name]
        rows = conn.execute(
            select(col).where(runs.c.mode == MODE, col.is_not(None)).distinct().order_by(col)
        )
        out[name] = [str(r[0]) for r in rows]
    return out


def latest_change(conn: Connection) -> tuple[Any, ...]:
    """(backtest runs, newest start, newest finish): changes when a run starts or ends."""
    return tuple(
        conn.execute(
            select(func.count(), func.max(runs.c.started_at), func.max(runs.c.finished_at)).where(
                runs.c.mode == MODE
            )
        ).one()
    )


def exposure_share(conn: Connection, run_id: str) -> float | None:
    """Share of bars with a position open (the account series' exposure > 0)."""
    compact = read_series(conn, run_id, ACCOUNT, ("exposure",), MODE)
    if compact is None or "exposure" not in compact or not len(compact):
        return None
    values = compact["exposure"].to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    return float((np.abs(values) > 1e-12).mean()) if len(values) else None


def no_trade_reasons(conn: Connection, run_id: str, top: int = 5) -> dict[str, Any] | None:
    """Why a run made no trades, from its recorded decisions: signals, how many were
    sized to zero, and the commonest reasons. None when no decisions were recorded."""
    frame = read_series(conn, run_id, DECISIONS, ("action", "size", "reason"), MODE)
    if frame is None or not len(frame):
        return None
    zero = frame[pd.to_numeric(frame["size"], errors="coerce").fillna(0.0) == 0.0]
    reasons = zero["reason"].fillna("(no reason recorded)").astype(str).value_counts()
    actions = frame["action"].fillna("").astype(str).value_counts()
    return {
        "signals": len(frame),
        "zero": len(zero),
        "reasons": [(str(r), int(n)) for r, n in reasons.head(top).items()],
        "actions": [(str(a), int(n)) for a, n in actions.head(top).items()],
    }


def equity_curve(conn: Connection, run_id: str) -> pd.DataFrame:
    # Backtests store the curve as compressed columns; older runs as account_history rows.
    compact = read_series(conn, run_id, ACCOUNT, ("equity", "balance", "drawdown"), MODE)
    if compact is not None:
        thinned = charts.downsample(compact, "equity", MAX_POINTS)
        return _with_return(thinned.assign(time=naive_utc(thinned["time"])))
    rows = conn.execute(
        select(account.c.time, account.c.equity, account.c.balance, account.c.drawdown)
        .where(where_run(account, run_id, MODE))
        .order_by(account.c.time)
    ).all()
    df = pd.DataFrame([tuple(r) for r in rows], columns=["time", "equity", "balance", "drawdown"])
    if len(df):
        df["time"] = naive_utc(df["time"])
    return _with_return(charts.downsample(df, "equity", MAX_POINTS))


def _with_return(df: pd.DataFrame) -> pd.DataFrame:
    """Thinning keeps the first row, so the return is still relative to the start."""
    if len(df):
        df["return"] = df["equity"] / df["equity"].iloc[0] - 1.0
    else:
        df["return"] = []
    return df


def run_trades(conn: Connection, run_id: str, limit: int = 20_000) -> pd.DataFrame:
    cols = [trades.c[c] for c in TRADE_CSV_COLUMNS if c != "trade_no"] + [trades.c.trade_no]
    rows = conn.execute(
        select(*cols)
        .where(where_run(trades, run_id, MODE))
        .order_by(trades.c.exit_time)
        .limit(limit)
    ).all()
    df = pd.DataFrame([dict(r._mapping) for r in rows], columns=[c.name for c in cols])
    return normalise_trades(df)


def normalise_trades(df: pd.DataFrame) -> pd.DataFrame:
    for col in ("entry_time", "exit_time"):
        if col in df.columns and len(df):
            df[col] = naive_utc(df[col])
    for col in ("qty", "entry_price", "exit_price", "fees", "pnl", "return_pct"):
        if col in df.columns:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    if len(df) and "pnl" in df.columns:
        df["cum_pnl"] = df["pnl"].cumsum()
    else:
        df["cum_pnl"] = pd.Series(dtype=float)
    return df


def run_summary(df_runs: pd.DataFrame, run_id: str | None) -> dict[Hashable, Any]:
    if run_id is None or not len(df_runs):
        return {}
    match = df_runs[df_runs["id"] == run_id]
    return {} if not len(match) else match.iloc[0].to_dict()


def get_run_row(conn: Connection, run_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(runs).where(runs.c.id == run_id, runs.c.mode == MODE)).first()
    return None if row is None else dict(row._mapping)


def compare(engine: Engine, run_ids: list[str]) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """Side-by-side metrics and each run's equity curve as return since start."""
    with engine.connect() as conn:
        registry = run_registry(conn, limit=10_000)
        table = registry[registry["id"].isin(run_ids)]
        curves = {rid: equity_curve(conn, rid) for rid in run_ids}
    return table.reset_index(drop=True), curves


def sweep_table(conn: Connection, sweep_id: str) -> tuple[pd.DataFrame, list[str]]:
    """One row per job: flattened parameter columns (those that vary first) and metrics."""
    df = run_registry(conn, sweep_id=sweep_id, limit=10_000)
    params = [strategy_params(p) or {} for p in df["parameters"]]
    keys = sorted({k for p in params if isinstance(p, dict) for k in p})
    for key in keys:
        df[f"param.{key}"] = [p.get(key) if isinstance(p, dict) else None for p in params]
    varying = [k for k in keys if df[f"param.{k}"].astype(str).nunique() > 1]
    fixed = [k for k in keys if k not in varying]
    return df.sort_values("job_num").reset_index(drop=True), varying + fixed


def read_trade_csv(path: Path) -> pd.DataFrame:
    """A backtest's `export_csv` file (atb.engine.report.TRADE_COLUMNS)."""
    df = pd.read_csv(path)
    missing = [c for c in ("exit_time", "pnl") if c not in df.columns]
    if missing:
        raise ValueError(f"{path.name}: not a trade export (missing {', '.join(missing)})")
    return normalise_trades(df)


def list_csv_exports(logs_dir: Path | None, limit: int = 200) -> list[Path]:
    if logs_dir is None or not Path(logs_dir).is_dir():
        return []
    files = sorted(Path(logs_dir).rglob("*.csv"), key=lambda p: p.stat().st_mtime, reverse=True)
    return files[:limit]
