"""The model's own record next to this run's: holdout scores from its metadata JSON,
naive baselines, and feature drift against its training period (plain pandas)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from atb.dashboards.market_prediction.model import DRIFT_Z, Summary, buy_and_hold
from atb.dashboards.market_prediction.stats import Z95, sample_note


def fmt_pct(value: Any, signed: bool = False, digits: int = 2) -> str:
    if not isinstance(value, int | float) or not np.isfinite(value):
        return "–"
    return f"{value * 100:+.{digits}f} %" if signed else f"{value * 100:.{digits}f} %"


def fmt_plain(value: Any, digits: int = 4) -> str:
    """A number as a trader reads it: thousands separators, `digits` significant digits
    below 1,000, never an exponent (a log return of 2.3e-05 is 0.00002300)."""
    if not isinstance(value, int | float) or not np.isfinite(value):
        return "–"
    if abs(value) >= 1000:
        return f"{value:,.2f}"
    return np.format_float_positional(
        float(value), precision=digits, unique=False, fractional=False, trim="-"
    )


def hit_rate_text(rate: float | None, n: int) -> str:
    """'53.00 % ± 9.80 pp (n=100)', or the warning when `n` outcomes say nothing."""
    if rate is None:
        return "–"
    note = sample_note(n)
    if note:
        return f"{fmt_pct(rate)} — {note}"
    return f"{fmt_pct(rate)} ± {Z95 * 50 / np.sqrt(n):.2f} pp (n={n:,})"


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
        "n",
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
                "n": len(values),
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
        n = hold.get("directional_n")
        z = hold.get("z_vs_coin_flip")
        rows.append(
            (
                f"Holdout direction hit rate ({period}"
                + (f", n={n:,})" if isinstance(n, int) else ")"),
                fmt_pct(hold.get("directional_accuracy")),
                f"coin flip {fmt_pct(hold.get('coin_flip_accuracy', 0.5))}, "
                f"always up {fmt_pct(hold.get('always_up_accuracy'))}"
                + (f" (z = {z:.2f} vs coin flip)" if isinstance(z, int | float) else ""),
            )
        )
        # Root of the stored MSE: an error in percent of price reads; 3.1e-05 does not.
        rows.append(
            (
                "Holdout RMS error of the next-bar return",
                fmt_pct(_root(hold.get("mse")), digits=3),
                f"no change {fmt_pct(_root(hold.get('mse_no_change')), digits=3)} "
                f"(skill {fmt_pct(hold.get('skill_vs_no_change'), True)})",
            )
        )
    rows.append(
        (
            "This run: direction hit rate",
            hit_rate_text(summary.accuracy, summary.hits_n),
            "coin flip 50.00 %",
        )
    )
    note = sample_note(summary.errors_n)
    rows.append(
        (
            "This run: mean abs error of the next close",
            fmt_pct(summary.mae_pct, digits=3) + (f" — {note}" if note else ""),
            f"no change {fmt_pct(summary.no_change_mae_pct, digits=3)}",
        )
    )
    bh = buy_and_hold(metrics, scored)
    total = metrics.get("total_return")
    rows.append(
        (
            "This run: strategy return"
            if total is not None
            else "This run: strategy return (when the run finishes)",
            fmt_pct(total, True),
            f"buy & hold {fmt_pct(bh, True)}",
        )
    )
    return rows


def _root(value: Any) -> float | None:
    return float(np.sqrt(value)) if isinstance(value, int | float) and value >= 0 else None
