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
from sqlalchemy import Connection, select

from atb.dashboards.tables import naive_utc, predictions, runs
from atb.db.series import PREDICTIONS, read_series, run_series

MODELS_DIR = Path(__file__).resolve().parents[2] / "ml" / "models"
ROLLING = 50
DRIFT_Z = 2.0


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
    out = pd.DataFrame({"id": np.arange(start + 1, total + 1)})
    for name in ("time", "predicted_price", "r", "confidence", "direction", "model_id"):
        out[name] = tail[name].to_numpy() if name in tail.columns else None
    out["direction"] = [None if v != v or v is None else int(v) for v in out["direction"]]
    out["mode"] = mode
    out["time"] = naive_utc(out["time"])
    return out


def runs_with_predictions(conn: Connection, limit: int = 200) -> list[dict[str, Any]]:
    from atb.dashboards.tables import list_runs

    return list_runs(conn, limit=limit, with_predictions=True)


def score(df: pd.DataFrame, window: int = ROLLING) -> pd.DataFrame:
    """Per-prediction outcome: actual close, next close, hit, error; plus rolling means."""
    out = df.copy()
    if not len(out):
        for col in (
            "close",
            "actual_next",
            "hit",
            "error_pct",
            "abs_error_pct",
            "rolling_accuracy",
            "rolling_abs_error",
        ):
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
    out["error_pct"] = (price - out["actual_next"]) / out["actual_next"]
    out["abs_error_pct"] = out["error_pct"].abs()
    out["rolling_accuracy"] = out["hit"].rolling(window, min_periods=max(5, window // 5)).mean()
    out["rolling_abs_error"] = (
        out["abs_error_pct"].rolling(window, min_periods=max(5, window // 5)).mean()
    )
    return out


@dataclass
class Summary:
    predictions: int = 0
    accuracy: float | None = None
    mae_pct: float | None = None
    mean_confidence: float | None = None
    model_id: str | None = None
    drifting: int = 0


def summarise(scored: pd.DataFrame, drift: pd.DataFrame | None = None) -> Summary:
    if not len(scored):
        return Summary()
    hits = scored["hit"].dropna()
    errors = scored["abs_error_pct"].dropna()
    conf = pd.to_numeric(scored["confidence"], errors="coerce").dropna()
    ids = scored["model_id"].dropna()
    return Summary(
        predictions=len(scored),
        accuracy=float(hits.mean()) if len(hits) else None,
        mae_pct=float(errors.mean()) if len(errors) else None,
        mean_confidence=float(conf.mean()) if len(conf) else None,
        model_id=str(ids.iloc[-1]) if len(ids) else None,
        drifting=int(drift["drift"].sum()) if drift is not None and len(drift) else 0,
    )


def confidence_histogram(scored: pd.DataFrame, bins: int = 20) -> pd.DataFrame:
    conf = pd.to_numeric(scored.get("confidence", pd.Series(dtype=float)), errors="coerce").dropna()
    counts, edges = np.histogram(conf, bins=bins, range=(0.0, 1.0))
    return pd.DataFrame({"left": edges[:-1], "right": edges[1:], "count": counts})


def find_metadata(model_id: str | None, models_dir: Path = MODELS_DIR) -> dict[str, Any] | None:
    """The metadata JSON whose `model_id` matches (else the only model, if just one)."""
    files = sorted(models_dir.glob("*.json")) if models_dir.is_dir() else []
    metas = [m for m in (_read_json(str(f), f.stat().st_mtime) for f in files) if m]
    for meta in metas:
        if model_id and meta.get("model_id") == model_id:
            return meta
    return metas[0] if len(metas) == 1 else None


@lru_cache(maxsize=16)
def _read_json(path: str, _mtime: float) -> dict[str, Any] | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def feature_drift(meta: dict[str, Any] | None, recent: dict[str, np.ndarray]) -> pd.DataFrame:
    """Recent feature values vs the training period: mean shift in training σ, and the share
    of recent values outside the training 1 %–99 % range (≈ 2 % when nothing drifted)."""
    cols = [
        "feature",
        "train_mean",
        "train_std",
        "train_p01",
        "train_p99",
        "now_mean",
        "now_std",
        "z",
        "outside_share",
        "drift",
    ]
    stats = (meta or {}).get("feature_stats") or {}
    train: dict[str, dict[str, float]] = dict(stats.get("raw") or {})
    if "close_log_return" in stats:
        train["close_log_return"] = stats["close_log_return"]
    rows = []
    for name, values in recent.items():
        ref = train.get(name)
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        if ref is None or not len(values):
            continue
        std = float(ref.get("std") or 0.0)
        now_mean = float(values.mean())
        z = (now_mean - float(ref["mean"])) / std if std > 0 else float("nan")
        lo, hi = ref.get("p01"), ref.get("p99")
        outside = (
            float(((values < lo) | (values > hi)).mean())
            if lo is not None and hi is not None
            else float("nan")
        )
        rows.append(
            {
                "feature": name,
                "train_mean": float(ref["mean"]),
                "train_std": std,
                "train_p01": lo,
                "train_p99": hi,
                "now_mean": now_mean,
                "now_std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "z": z,
                "outside_share": outside,
                "drift": bool(abs(z) > DRIFT_Z or (np.isfinite(outside) and outside > 0.10)),
            }
        )
    return pd.DataFrame(rows, columns=cols)


def recent_features(
    scored: pd.DataFrame, candles: pd.DataFrame | None, window: int = 500
) -> dict[str, np.ndarray]:
    """Model inputs over the last `window` bars: candles when on disk, else implied closes."""
    if candles is not None and len(candles):
        tail = candles.tail(window)
        out = {
            c: tail[c].to_numpy(dtype=float)
            for c in ("open", "high", "low", "close", "volume")
            if c in tail.columns
        }
        close = tail["close"].to_numpy(dtype=float)
    else:
        close = scored["close"].tail(window).to_numpy(dtype=float) if len(scored) else np.array([])
        out = {"close": close}
    if len(close) > 1:
        out["close_log_return"] = np.diff(np.log(close))
    return out


def run_candles(conn: Connection, run_id: str) -> pd.DataFrame | None:
    row = conn.execute(select(runs).where(runs.c.id == run_id)).first()
    if row is None:
        return None
    from atb.dashboards.backtesting.model import candles_for

    return candles_for(dict(row._mapping), limit=10**9)


def run_metrics(conn: Connection, run_id: str) -> dict[str, Any]:
    """The run's result metrics (total return, buy & hold, …); {} while it has none."""
    row = conn.execute(select(runs.c.metrics).where(runs.c.id == run_id)).first()
    value = row[0] if row is not None else None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def buy_and_hold(metrics: dict[str, Any], scored: pd.DataFrame) -> float | None:
    """The run's recorded buy & hold return, else the one implied by its predicted bars."""
    bh = metrics.get("buy_and_hold_return")
    if isinstance(bh, int | float):
        return float(bh)
    if len(scored) > 1:
        close = scored["close"].to_numpy(dtype=float)
        return float(close[-1] / close[0] - 1.0)
    return None


def _pct(value: Any, signed: bool = False) -> str:
    if not isinstance(value, int | float) or not np.isfinite(value):
        return "–"
    return f"{value * 100:+.2f} %" if signed else f"{value * 100:.2f} %"


def baseline_rows(
    meta: dict[str, Any] | None, metrics: dict[str, Any], summary: Summary, scored: pd.DataFrame
) -> list[tuple[str, str, str]]:
    """(measure, model, naive baseline) rows: the model's honest scores next to what a
    forecast or a strategy must beat. Holdout scores come from the model's metadata
    (bars after its training period, never fitted on); the run's from its records."""
    rows: list[tuple[str, str, str]] = []
    hold = (meta or {}).get("holdout") or {}
    if hold:
        period = f"{str(hold.get('start', '?'))[:10]} → {str(hold.get('last_bar', '?'))[:10]}"
        rows.append(
            (
                f"Holdout direction hit rate ({period})",
                _pct(hold.get("directional_accuracy")),
                f"coin flip {_pct(hold.get('coin_flip_accuracy', 0.5))}, "
                f"always up {_pct(hold.get('always_up_accuracy'))}",
            )
        )
        mse, none = hold.get("mse"), hold.get("mse_no_change")
        rows.append(
            (
                "Holdout MSE of the next-bar return",
                f"{mse:.3e}" if isinstance(mse, int | float) else "–",
                f"no change {none:.3e} (skill {_pct(hold.get('skill_vs_no_change'), True)})"
                if isinstance(none, int | float)
                else "–",
            )
        )
    rows.append(("This run: direction hit rate", _pct(summary.accuracy), "coin flip 50.00 %"))
    bh = buy_and_hold(metrics, scored)
    total = metrics.get("total_return")
    rows.append(
        (
            "This run: strategy return"
            if total is not None
            else "This run: strategy return (when the run finishes)",
            _pct(total, True),
            f"buy & hold {_pct(bh, True)}",
        )
    )
    return rows
