"""The market_prediction page as a trader reads it.

A database with several runs: the sample seed's 300-prediction sweep job, a 100,000-bar
ml_basic-like backtest (compact series, as the engine records it) and, newest of all, a
paper session that has made 3 predictions. The page must open on the long run, not the
3-prediction one; say so when a figure rests on too few outcomes; plot returns (not
prices) with a calibration curve; draw min_confidence; and show no scientific notation.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from atb_testkit import sample
from sqlalchemy import create_engine, insert

from atb.dashboards import tables as t
from atb.dashboards.market_prediction import diagnostics as dg
from atb.dashboards.market_prediction import model as mp
from atb.dashboards.market_prediction import stats as st
from atb.dashboards.market_prediction.app import (
    baseline_table,
    sample_warnings,
    summary_kpis,
)
from atb.dashboards.readonly import dispose_all, readonly_engine
from atb.db.series import PREDICTIONS, write_series

LONG = "backtest-ml-long-0001"
TINY = "paper-ml-tiny-0001"
LONG_BARS = 100_000
SHIPPED = str((mp.find_metadata(None) or {}).get("model_id"))
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"


def _long_run(conn: Any, now: datetime) -> None:
    """100k hourly bars, a model right about direction 53 % of the time whose predicted
    returns are a tenth of the realised ones (the shape of the shipped ridge model)."""
    rng = np.random.default_rng(11)
    n = LONG_BARS
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0, 0.005, n + 1)))
    move = close[1:] / close[:-1] - 1.0
    right = rng.random(n) < 0.53
    r = np.where(right, 1.0, -1.0) * np.sign(move) * np.abs(rng.normal(0, 0.0005, n))
    r[:119] = np.nan  # warm-up bars: no window yet, no prediction
    scale = 1.0 / 0.0008
    conf = np.minimum(1.0, np.abs(r) * scale)
    times = pd.date_range(datetime(2013, 1, 1, tzinfo=UTC), periods=n, freq="1h")
    params = {"name": "ml_basic", "min_confidence": 0.3, "sequence_length": 120}
    conn.execute(
        insert(t.runs),
        [
            {
                **sample._run(LONG, "backtest", strategy="ml_basic", parameters=params),
                "started_at": now - timedelta(hours=2),
                "data_start": times[0].to_pydatetime(),
                "data_end": times[-1].to_pydatetime(),
                "bars": n,
                "metrics": {"total_return": -0.12, "buy_and_hold_return": 0.35},
            }
        ],
    )
    write_series(
        conn,
        LONG,
        "backtest",
        PREDICTIONS,
        {
            "time": times,
            "predicted_price": close[:-1] * (1 + r),
            "r": r,
            "confidence": conf,
            "direction": np.sign(r),
            "model_id": [SHIPPED] * n,
        },
    )


def _tiny_run(conn: Any, now: datetime) -> None:
    """A paper session that started a minute ago: 3 predictions, min_confidence only in
    its config (as a run records it before the strategy reports parameters)."""
    config = {"mode": "paper", "strategy": {"name": "ml_basic", "min_confidence": 0.45}}
    conn.execute(
        insert(t.runs),
        [{**sample._run(TINY, "paper", status="running", config=config), "started_at": now}],
    )
    rows = sample.prediction_rows(TINY, "paper", 3, np.random.default_rng(3))
    for i, row in enumerate(rows):
        row["time"] = now - timedelta(minutes=3 - i)
    conn.execute(insert(t.predictions), rows)


@pytest.fixture(scope="module")
def db_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('mp') / 'atb.db'}"
    sample.seed(url)
    now = datetime.now(UTC)
    engine = create_engine(url)
    with engine.begin() as conn:
        _long_run(conn, now)
        _tiny_run(conn, now)
    engine.dispose()
    yield url
    dispose_all()


def _scored(url: str, run_id: str) -> tuple[pd.DataFrame, int]:
    with readonly_engine(url).connect() as conn:
        preds = mp.load_predictions(conn, run_id, limit=mp.PAGE_LIMIT)
    window = mp.rolling_window(len(preds))
    return mp.score(preds, window), window


def test_opens_on_the_newest_run_with_enough_predictions(db_url: str) -> None:
    with readonly_engine(db_url).connect() as conn:
        found = mp.runs_with_predictions(conn)
        assert mp.min_confidence(conn, LONG) == 0.3  # from its strategy parameters
        assert mp.min_confidence(conn, TINY) == 0.45  # from its config
        assert mp.min_confidence(conn, sample.BACKTEST_A) is None
    counts = {r["id"]: r["predictions"] for r in found}
    assert [r["id"] for r in found] == [TINY, LONG, sample.BACKTEST_A]  # newest first
    assert counts == {TINY: 3, LONG: LONG_BARS, sample.BACKTEST_A: 300}
    assert mp.default_run(found) == LONG
    # Nothing has enough: the one with the most, not the newest.
    few = [{"id": "a", "predictions": 3}, {"id": "b", "predictions": 40}]
    assert mp.default_run(few) == "b"
    assert mp.default_run([]) is None


def test_every_thin_figure_says_so(db_url: str) -> None:
    scored, window = _scored(db_url, TINY)
    summary = mp.summarise(scored, recorded=3)
    kpis = {k: (label, value, tone) for k, label, value, tone in summary_kpis(summary)}
    assert kpis["accuracy"][1].endswith(f"— n={summary.hits_n}, not meaningful")
    assert kpis["accuracy"][2] == "warn" and kpis["predictions"][2] == "warn"
    warnings = sample_warnings(summary, window, st.calibration(scored))
    assert any(line.startswith("Directional accuracy") for line in warnings)
    assert any("not drawn" in line for line in warnings)
    assert any("calibration bin" in line for line in warnings)
    rows = {r[0]: r[1] for r in dg.baseline_rows(None, {}, summary, scored)}
    assert "not meaningful" in rows["This run: direction hit rate"]
    # The long run: counts in the labels, no warnings.
    scored, window = _scored(db_url, LONG)
    summary = mp.summarise(scored, recorded=LONG_BARS)
    assert window == 1000 and summary.predictions == LONG_BARS - 119
    kpis = {k: (label, value, tone) for k, label, value, tone in summary_kpis(summary)}
    assert kpis["accuracy"][0] == f"Directional accuracy · n={summary.hits_n:,}"
    assert 0.52 < (summary.accuracy or 0) < 0.54 and kpis["accuracy"][2] == "good"
    assert sample_warnings(summary, window, st.calibration(scored)) == []


def test_calibration_bins_predicted_against_realised_returns(db_url: str) -> None:
    scored, _ = _scored(db_url, LONG)
    known = scored.dropna(subset=["predicted_return", "realised_return"])
    realised = known["close"].shift(-1) / known["close"] - 1
    assert known["realised_return"].iloc[:-1].to_numpy() == pytest.approx(
        realised.iloc[:-1].to_numpy()
    )
    calib = st.calibration(scored)
    assert len(calib) == 10 and int(calib["n"].sum()) == len(known)
    assert calib["enough"].all() and (calib["lo"] <= calib["realised"]).all()
    # Predicted returns ascend by bin; a model with an edge moves the realised mean with
    # them (same sign at the ends), at ~10x the predicted scale here.
    assert calib["predicted"].is_monotonic_increasing
    assert calib["realised"].iloc[0] < 0 < calib["realised"].iloc[-1]
    tiny = st.calibration(_scored(db_url, TINY)[0])
    assert len(tiny) == 1 and not tiny["enough"].iloc[0]
    assert st.calibration(scored.iloc[:0]).empty


def test_rolling_lines_need_a_full_window(db_url: str) -> None:
    scored, window = _scored(db_url, sample.BACKTEST_A)
    assert window == mp.ROLLING
    first = scored["rolling_accuracy"].first_valid_index()
    assert first is not None and scored["hit"].iloc[: first + 1].notna().sum() == window
    hist = st.confidence_histogram(scored)
    assert hist["count"].sum() == 300 and hist["hit_rate"].dropna().between(0, 1).all()
    assert st.coin_flip_band(100) == pytest.approx(0.098)


def test_scoring_and_drift(db_url: str) -> None:
    with readonly_engine(db_url).connect() as conn:
        preds = mp.load_predictions(conn, sample.BACKTEST_A)
    scored = mp.score(preds)
    # The implied close reproduces the seed's price path: predicted = close * (1 + r).
    assert (scored["close"] * (1 + scored["r"])).to_numpy() == pytest.approx(
        scored["predicted_price"].to_numpy()
    )
    summary = mp.summarise(scored)
    assert summary.predictions == 300
    assert 0.5 < (summary.accuracy or 0) < 0.8  # the seed's model is right ~60 % of the time
    meta = mp.find_metadata(summary.model_id)
    assert meta is not None and meta["model_id"] == summary.model_id
    drift = dg.feature_drift(meta, dg.recent_features(scored, None))
    assert set(drift["feature"]) == {"close", "close_log_return"}
    shifted = dg.feature_drift(meta, {"close": scored["close"].to_numpy() * 10})
    assert bool(shifted["drift"].iloc[0])
    assert mp.score(preds.iloc[:0]).empty


def test_holdout_next_to_baselines_without_exponents(db_url: str) -> None:
    """The model's holdout scores (from its metadata) beside coin flip, "no change",
    "always up" and buy & hold, as the page shows them: percent, never 3.1e-05."""
    with readonly_engine(db_url).connect() as conn:
        preds = mp.load_predictions(conn, sample.BACKTEST_A)
        metrics = mp.run_metrics(conn, sample.BACKTEST_A)
    scored = mp.score(preds)
    summary = mp.summarise(scored)
    meta = mp.find_metadata(summary.model_id)
    assert meta is not None and meta["holdout"]["start"].startswith("2024-01-01")
    hold = meta["holdout"]
    baseline = dg.baseline_rows(meta, metrics, summary, scored)
    rows = {r[0].split(" (")[0]: r[1:] for r in baseline}
    assert rows["Holdout direction hit rate"][0] == f"{hold['directional_accuracy'] * 100:.2f} %"
    assert rows["Holdout direction hit rate"][1].startswith(
        f"coin flip 50.00 %, always up {hold['always_up_accuracy'] * 100:.2f} %"
    )
    rmse = rows["Holdout RMS error of the next-bar return"]
    assert rmse[0] == f"{np.sqrt(hold['mse']) * 100:.3f} %"
    assert rmse[1].startswith(f"no change {np.sqrt(hold['mse_no_change']) * 100:.3f} %")
    assert rows["This run: direction hit rate"][0].endswith(f"(n={summary.hits_n})")
    assert rows["This run: strategy return"][0] == f"{metrics['total_return'] * 100:+.2f} %"
    close = scored["close"].to_numpy()
    assert (
        rows["This run: strategy return"][1]
        == f"buy & hold {(close[-1] / close[0] - 1) * 100:+.2f} %"
    )
    assert not any("e-" in cell or "e+" in cell for row in baseline for cell in row)
    bh = mp.buy_and_hold(metrics, scored)
    kpis = {k[0]: k[2] for k in summary_kpis(summary, meta, metrics, bh)}
    assert kpis["holdout"] == f"{hold['directional_accuracy'] * 100:.2f}%"
    assert kpis["vs_buy_hold"] == (
        f"{metrics['total_return'] * 100:+.2f}% / {(close[-1] / close[0] - 1) * 100:+.2f}%"
    )
    assert "Naive baseline" in baseline_table(baseline, meta)
    assert "no holdout scores" in baseline_table([], {})
    assert "No metadata JSON" in baseline_table([], None)
    assert mp.find_metadata("some-other-model") is None  # never another model's scores
    assert [dg.fmt_plain(v) for v in (2.3e-05, 40123.456, -0.5, float("nan"))] == [
        "0.000023",
        "40,123.46",
        "-0.5",
        "–",
    ]
