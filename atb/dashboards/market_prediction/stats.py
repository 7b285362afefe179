"""What the market_prediction charts plot, from scored predictions (plain pandas).

Every figure here carries the number of outcomes it rests on, so the page can say when
one is too thin to read: a calibration bin of 5 or a hit rate of 3 is noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from atb.dashboards.market_prediction.model import MIN_SAMPLES

MAX_POINTS = 5000
"""Points per chart: more than a 1440 px wide chart can show apart."""
MIN_BIN = 30
"""Fewest outcomes per calibration bin: below it a bin's mean is noise, not a calibration."""
Z95 = 1.96


def sample_note(n: int, minimum: int = MIN_SAMPLES) -> str:
    """'' when `n` outcomes are enough to read a figure, else why it should not be read."""
    return "" if n >= minimum else f"n={n:,}, not meaningful"


def coin_flip_band(n: int) -> float:
    """Half-width of the 95 % range of a coin flip's hit rate over `n` outcomes: a
    rolling accuracy inside 50 % ± this is indistinguishable from guessing."""
    return Z95 * 0.5 / np.sqrt(n) if n > 0 else float("nan")


def calibration(scored: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Predicted return in equal-count bins against the mean realised return of each.

    A calibrated model's points sit on the diagonal; a model with a directional edge but
    the wrong scale sits on a line through the origin with another slope; one without an
    edge on the horizontal axis. Bins shrink in number until each holds `MIN_BIN`
    outcomes (fewer outcomes than that: no bins); each row says how many it holds and the
    95 % interval of its mean.
    """
    cols = ["predicted", "realised", "lo", "hi", "n", "hit_rate"]
    pred = pd.to_numeric(scored["predicted_return"], errors="coerce").to_numpy(dtype=float)
    real = pd.to_numeric(scored["realised_return"], errors="coerce").to_numpy(dtype=float)
    hit = pd.to_numeric(scored["hit"], errors="coerce").to_numpy(dtype=float)
    known = np.isfinite(pred) & np.isfinite(real)
    if known.sum() < MIN_BIN:
        return pd.DataFrame(columns=cols)
    # Sorted once and cut into equal runs: a qcut + groupby costs 6x this at 200k rows.
    order = np.argsort(pred[known], kind="stable")
    pred, real, hit = pred[known][order], real[known][order], hit[known][order]
    k = min(bins, len(pred) // MIN_BIN)
    starts = np.arange(k) * len(pred) // k
    n = np.diff(np.r_[starts, len(pred)])
    mean = np.add.reduceat(real, starts) / n
    var = (np.add.reduceat(real**2, starts) - n * mean**2) / np.maximum(n - 1, 1)
    half = Z95 * np.sqrt(np.maximum(var, 0.0) / n)
    hits = np.where(np.isfinite(hit), hit, 0.0)
    scored_n = np.add.reduceat(np.isfinite(hit).astype(float), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        hit_rate = np.add.reduceat(hits, starts) / scored_n
    return pd.DataFrame(
        {
            "predicted": np.add.reduceat(pred, starts) / n,
            "realised": mean,
            "lo": mean - half,
            "hi": mean + half,
            "n": n,
            "hit_rate": hit_rate,
        }
    )[cols]


def confidence_histogram(scored: pd.DataFrame, bins: int = 20) -> pd.DataFrame:
    """Predictions per confidence bin on [0, 1], and each bin's directional hit rate with
    its 95 % interval over the `scored` predictions whose outcome is known. If confidence
    means anything, the hit rate rises from left to right."""
    empty = pd.Series(dtype=float)
    conf = pd.to_numeric(scored.get("confidence", empty), errors="coerce").to_numpy(dtype=float)
    hit = pd.to_numeric(scored.get("hit", empty), errors="coerce").to_numpy(dtype=float)
    known = np.isfinite(conf)
    conf, hit = conf[known], hit[known]
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    outcome = np.isfinite(hit)
    n = np.bincount(which[outcome], minlength=bins).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.bincount(which[outcome], weights=hit[outcome], minlength=bins) / n
        half = Z95 * np.sqrt(rate * (1 - rate) / n)
    return pd.DataFrame(
        {
            "left": edges[:-1],
            "right": edges[1:],
            "mid": (edges[:-1] + edges[1:]) / 2,
            "count": np.bincount(which, minlength=bins),
            "scored": n.astype(int),
            "hit_rate": rate,
            "lo": rate - half,
            "hi": rate + half,
        }
    )


def uniform_sample(df: pd.DataFrame, limit: int = MAX_POINTS) -> pd.DataFrame:
    """Every k-th row (and the last), at most ~`limit`. Uniform on purpose: a scatter's
    density is what it shows, and min/max buckets would draw only its outliers."""
    n = len(df)
    if n <= limit:
        return df
    keep = np.unique(np.r_[np.arange(0, n, int(np.ceil(n / limit))), n - 1])
    return df.iloc[keep]
