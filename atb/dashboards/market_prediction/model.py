"""View model of the market_prediction dashboard (plain pandas; unit-tested).

Predictions carry the predicted next close and its return `r` relative to the close the
model saw, so the actual close at each bar is `predicted_price / (1 + r)` and the outcome
of a prediction is the next row's close: no candle file is needed to score the model.
Feature diagnostics compare the recent inputs with the training-period statistics stored
in the model's metadata JSON (atb/ml/models/*.json).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, func, select

from atb.dashboards.tables import naive_utc, predictions, runs
from atb.db.series import PREDICTIONS, read_series, run_series

MODELS_DIR = Path(__file__).resolve().parents[2] / "ml" / "models"
ROLLING = 50
DRIFT_Z = 2.0
MIN_SAMPLES = 100
"""Fewer outcomes than this make a hit rate or mean error noise: at n = 100 a coin flip
scores 50 % ± 10 pp (95 %). The page opens on a run with at least this many and flags
every figure computed from fewer."""
PAGE_LIMIT = 200_000
"""Newest predictions the page scores: a year of 1-minute bars is 525,600."""
ROLLING_OF = {
    "rolling_accuracy": "hit",
    "rolling_abs_error": "abs_error_pct",
    "rolling_no_change_error": "no_change_error",
}
SCORED = (
    "close",
    "actual_next",
    "hit",
    "predicted_return",
    "realised_return",
    "error_pct",
    "abs_error_pct",
    "no_change_error",
    *ROLLING_OF,
    "rolling_skill",
)


def load_predictions(conn: Connection, run_id: str, limit: int = 20_000) -> pd.DataFrame:
    """The run's newest `limit` predictions in time order (index (run_id, time)).

    Backtests store them as compressed columns (run_series; ids are row numbers there),
    paper/live runs as rows.
    """
    total = conn.execute(
        select(run_series.c.length).where(
            run_series.c.run_id == run_id,
            run_series.c.series == PREDICTIONS,
            run_series.c.column == "time",
        )
    ).scalar()
    compact = None if total is None else read_series(conn, run_id, PREDICTIONS, tail=limit)
    if compact is not None:
        return _compact_predictions(conn, run_id, compact, int(total or 0))
    cols = [
        predictions.c[c]
        for c in (
            "id",
            "time",
            "predicted_price",
            "r",
            "confidence",
            "direction",
            "model_id",
            "mode",
        )
    ]
    rows = conn.execute(
        select(*cols)
        .where(predictions.c.run_id == run_id)
        .order_by(predictions.c.time.desc())
        .limit(limit)
    ).all()
    df = (
        pd.DataFrame([tuple(r) for r in rows], columns=[c.name for c in cols])
        .iloc[::-1]
        .reset_index(drop=True)
    )
    if len(df):
        df["time"] = naive_utc(df["time"])
    return df


def _compact_predictions(
    conn: Connection, run_id: str, tail: pd.DataFrame, total: int
) -> pd.DataFrame:
    start = total - len(tail)
    mode = conn.execute(select(runs.c.mode).where(runs.c.id == run_id)).scalar()
    n = len(tail)
    # Whole columns, never per-value Python: a tz-aware time column turned into an object
    # array of Timestamps costs 0.6 s per 100k bars, before the page can paint.
    cols: dict[str, Any] = {"id": np.arange(start + 1, total + 1)}
    for name in ("predicted_price", "r", "confidence"):
        cols[name] = (
            tail[name].to_numpy(dtype=float) if name in tail.columns else np.full(n, np.nan)
        )
    direction = (
        tail["direction"].to_numpy(dtype=float)
        if "direction" in tail.columns
        else np.full(n, np.nan)
    )
    known = np.isfinite(direction)
    cols["direction"] = np.full(n, None, dtype=object)
    cols["direction"][known] = direction[known].astype(np.int64)
    cols["model_id"] = tail["model_id"].to_numpy() if "model_id" in tail.columns else None
    cols["mode"] = mode
    out = pd.DataFrame(cols)
    out.insert(1, "time", naive_utc(tail["time"]).to_numpy())
    return out


def runs_with_predictions(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    """Newest first, each with `predictions`: how many it recorded."""
    from atb.dashboards.tables import list_runs

    found = list_runs(conn, limit=limit, with_predictions=True)
    counts = prediction_counts(conn, [r["id"] for r in found])
    return [{**r, "predictions": counts.get(r["id"], 0)} for r in found]


def runs_total(conn: Connection) -> int:
    """All recorded runs: a change means the run list is re-read."""
    return int(conn.execute(select(func.count()).select_from(runs)).scalar() or 0)


def prediction_counts(conn: Connection, run_ids: list[str]) -> dict[str, int]:
    """Recorded predictions per run: the compact series' length (backtests), else the
    row count (paper/live). Both are index lookups, so 200 runs cost one page load."""
    if not run_ids:
        return {}
    compact = conn.execute(
        select(run_series.c.run_id, run_series.c.length).where(
            run_series.c.run_id.in_(run_ids),
            run_series.c.series == PREDICTIONS,
            run_series.c.column == "time",
        )
    ).all()
    counts = {str(r[0]): int(r[1]) for r in compact}
    rest = [i for i in run_ids if i not in counts]
    if rest:
        rows = conn.execute(
            select(predictions.c.run_id, func.count())
            .where(predictions.c.run_id.in_(rest))
            .group_by(predictions.c.run_id)
        ).all()
        counts.update({str(r[0]): int(r[1]) for r in rows})
    return counts


def default_run(found: list[dict[str, Any]], minimum: int = MIN_SAMPLES) -> str | None:
    """The run the page opens on: the newest with at least `minimum` predictions (fewer
    score nothing meaningful), else the one with the most."""
    for run in found:
        if run.get("predictions", 0) >= minimum:
            return str(run["id"])
    if not found:
        return None
    return str(max(found, key=lambda r: r.get("predictions", 0))["id"])


def rolling_window(n: int) -> int:
    """Predictions per rolling mean: a round number near n / 50 (50 at least, 1,000 at
    most), so a 100k-bar run's accuracy line is not drawn from 50-bar coin-flip noise
    and a 300-bar run still has a line."""
    return max(w for w in (ROLLING, 100, 200, 500, 1000) if w <= max(ROLLING, n // 50))


def score(df: pd.DataFrame, window: int = ROLLING) -> pd.DataFrame:
    """Per-prediction outcome: actual close, next close, realised return, hit, errors;
    plus their rolling means over `window` predictions."""
    out = df.copy()
    if not len(out):
        for col in SCORED:
            out[col] = pd.Series(dtype=float)
        return out
    price = pd.to_numeric(out["predicted_price"], errors="coerce")
    r = pd.to_numeric(out["r"], errors="coerce")
    out["close"] = price / (1.0 + r)
    out["actual_next"] = out["close"].shift(-1)
    actual_move = np.sign(out["actual_next"] - out["close"])
    predicted_move = np.sign(r)
    known = out["actual_next"].notna() & (predicted_move != 0)
    out["hit"] = np.where(known, (actual_move == predicted_move).astype(float), np.nan)
    out["predicted_return"] = r
    out["realised_return"] = out["actual_next"] / out["close"] - 1.0
    out["error_pct"] = (price - out["actual_next"]) / out["actual_next"]
    out["abs_error_pct"] = out["error_pct"].abs()
    # "No change" (tomorrow's close = today's) is the forecast a model must beat: its
    # error is the size of the realised move.
    out["no_change_error"] = (out["close"] - out["actual_next"]).abs() / out["actual_next"]
    # A full window or nothing: a "rolling accuracy" of 3 hits is noise drawn as a trend.
    for col, src in ROLLING_OF.items():
        out[col] = out[src].rolling(window, min_periods=window).mean()
    # Skill: the share of the no-change forecast's error the model removes (0 = none).
    out["rolling_skill"] = 1.0 - out["rolling_abs_error"] / out["rolling_no_change_error"]
    return out


@dataclass
class Summary:
    """Headline scores of the loaded predictions, each with the sample it rests on."""

    predictions: int = 0
    accuracy: float | None = None
    hits_n: int = 0
    mae_pct: float | None = None
    no_change_mae_pct: float | None = None
    errors_n: int = 0
    mean_confidence: float | None = None
    confidence_n: int = 0
    model_id: str | None = None
    drifting: int = 0
    features_checked: int = 0
    """Features compared with the training period (0: the model's statistics are unknown)."""
    features_n: int = 0
    """Recent values each feature comparison rests on (the fewest of any feature)."""
    recorded: int = 0
    """Predictions the run recorded (more than were loaded when it is very long)."""


def summarise(
    scored: pd.DataFrame, drift: pd.DataFrame | None = None, recorded: int | None = None
) -> Summary:
    if not len(scored):
        return Summary(recorded=recorded or 0)
    hits = scored["hit"].dropna()
    errors = scored["abs_error_pct"].dropna()
    naive = scored["no_change_error"].dropna()
    conf = pd.to_numeric(scored["confidence"], errors="coerce").dropna()
    ids = scored["model_id"].dropna()
    made = int(pd.to_numeric(scored["r"], errors="coerce").notna().sum())
    return Summary(
        predictions=made,
        accuracy=float(hits.mean()) if len(hits) else None,
        hits_n=len(hits),
        mae_pct=float(errors.mean()) if len(errors) else None,
        no_change_mae_pct=float(naive.mean()) if len(naive) else None,
        errors_n=len(errors),
        mean_confidence=float(conf.mean()) if len(conf) else None,
        confidence_n=len(conf),
        model_id=str(ids.iloc[-1]) if len(ids) else None,
        drifting=int(drift["drift"].sum()) if drift is not None and len(drift) else 0,
        features_checked=len(drift) if drift is not None else 0,
        features_n=int(drift["n"].min()) if drift is not None and len(drift) else 0,
        recorded=max(made, recorded or 0),
    )


def find_metadata(model_id: str | None, models_dir: Path = MODELS_DIR) -> dict[str, Any] | None:
    """The metadata JSON whose `model_id` matches; for a run that recorded no model id,
    the only model on disk. Never another model's: its holdout scores and training
    statistics would be presented as this run's model's."""
    files = sorted(models_dir.glob("*.json")) if models_dir.is_dir() else []
    metas = [m for m in (_read_json(str(f), f.stat().st_mtime) for f in files) if m]
    if model_id:
        return next((meta for meta in metas if meta.get("model_id") == model_id), None)
    return metas[0] if len(metas) == 1 else None


@lru_cache(maxsize=16)
def _read_json(path: str, _mtime: float) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def run_candles(conn: Connection, run_id: str) -> pd.DataFrame | None:
    row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
    if row is None:
        return None
    from atb.dashboards.backtesting.model import candles_for

    return candles_for(dict(row._mapping), limit=10**9)


def run_metrics(conn: Connection, run_id: str) -> dict[str, Any]:
    """The run's result metrics (total return, buy & hold, …); {} while it has none."""
    row = conn.execute(select(runs.c.metrics).where(runs.c.id == run_id)).first()
    return _as_dict(row[0] if row is not None else None)


def buy_and_hold(metrics: dict[str, Any], scored: pd.DataFrame) -> float | None:
    """The run's recorded buy & hold return, else the one implied by its predicted bars."""
    bh = metrics.get("buy_and_hold_return")
    if isinstance(bh, int | float):
        return float(bh)
    if len(scored) > 1:
        close = scored["close"].to_numpy(dtype=float)
        return float(close[-1] / close[0] - 1.0)
    return None


def min_confidence(conn: Connection, run_id: str) -> float | None:
    """The run's `min_confidence` (below it ml_basic takes no position): its recorded
    strategy parameters, else its config; None when the run recorded neither."""
    row = conn.execute(select(runs.c.parameters, runs.c.config).where(runs.c.id == run_id)).first()
    if row is None:
        return None
    params, config = (_as_dict(v) for v in row)
    for source in (params, _as_dict(config.get("strategy"))):
        value = source.get("min_confidence")
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return None


def _as_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}
