"""The market_prediction page as a trader reads it.

A database with several runs: the sample seed's 300-prediction sweep job, a 100,000-bar
ml_basic-like backtest (compact series, as the engine records it) and, newest of all, a
paper session that has made 3 predictions. The page must open on the long run, not the
3-prediction one; say so when a figure rests on too few outcomes; plot returns (not
prices) with a calibration curve; draw min_confidence; and show no scientific notation.
"""

from __future__ import annotations

import itertools
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
from atb.dashboards.browser import chromium, chromium_path, new_page
from atb.dashboards.discovery import app_factory, find
from atb.dashboards.market_prediction import diagnostics as dg
from atb.dashboards.market_prediction import model as mp
from atb.dashboards.market_prediction import stats as st
from atb.dashboards.market_prediction.app import (
    baseline_table,
    sample_warnings,
    summary_kpis,
)
from atb.dashboards.readonly import dispose_all, readonly_engine
from atb.dashboards.server import DashboardServer
from atb.dashboards.settings import DashboardSettings
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


def _tiny_run(conn: Any, now: datetime, run_id: str = TINY, n: int = 3) -> None:
    """A paper session that started a minute ago: 3 predictions, min_confidence only in
    its config (as a run records it before the strategy reports parameters)."""
    config = {"mode": "paper", "strategy": {"name": "ml_basic", "min_confidence": 0.45}}
    conn.execute(
        insert(t.runs),
        [{**sample._run(run_id, "paper", status="running", config=config), "started_at": now}],
    )
    _predict(conn, run_id, now, n)


def _predict(conn: Any, run_id: str, now: datetime, n: int) -> None:
    """`n` more predictions of a paper session, the last a second ago (what its loop does)."""
    rows = sample.prediction_rows(run_id, "paper", n, np.random.default_rng(n))
    for i, row in enumerate(rows):
        row["time"] = now - timedelta(seconds=n - i)
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
    meta = mp.find_metadata(summary.model_id)
    drift = dg.feature_drift(meta, dg.recent_features(scored, None))
    summary = mp.summarise(scored, drift, recorded=3)
    assert summary.features_n == 2  # 3 closes, 2 log returns
    warnings = sample_warnings(summary, window)
    assert any(line.startswith("Directional accuracy") for line in warnings)
    assert any("not drawn" in line for line in warnings)
    assert any(line.startswith("Calibration needs") for line in warnings)
    assert any(line.startswith("Feature drift compares only") for line in warnings)
    rows = {r[0]: r[1] for r in dg.baseline_rows(None, {}, summary, scored)}
    assert "not meaningful" in rows["This run: direction hit rate"]
    # The long run: counts in the labels, no warnings.
    scored, window = _scored(db_url, LONG)
    summary = mp.summarise(scored, recorded=LONG_BARS)
    assert window == 1000 and summary.predictions == LONG_BARS - 119
    kpis = {k: (label, value, tone) for k, label, value, tone in summary_kpis(summary)}
    assert kpis["accuracy"][0] == f"Directional accuracy · n={summary.hits_n:,}"
    assert 0.52 < (summary.accuracy or 0) < 0.54 and kpis["accuracy"][2] == "good"
    assert sample_warnings(summary, window) == []


def test_calibration_bins_predicted_against_realised_returns(db_url: str) -> None:
    scored, _ = _scored(db_url, LONG)
    known = scored.dropna(subset=["predicted_return", "realised_return"])
    realised = known["close"].shift(-1) / known["close"] - 1
    assert known["realised_return"].iloc[:-1].to_numpy() == pytest.approx(
        realised.iloc[:-1].to_numpy()
    )
    calib = st.calibration(scored)
    assert len(calib) == 10 and int(calib["n"].sum()) == len(known)
    # The same bins computed the plain way: sort by predicted return, cut into 10 runs.
    ordered = known.sort_values("predicted_return", kind="stable")
    cuts = np.arange(11) * len(ordered) // 10
    chunks = [ordered.iloc[a:b] for a, b in itertools.pairwise(cuts)]
    for row, chunk in zip(calib.itertuples(), chunks, strict=True):
        assert row.n == len(chunk)
        assert row.predicted == pytest.approx(chunk["predicted_return"].mean())
        assert row.realised == pytest.approx(chunk["realised_return"].mean())
        half = 1.96 * chunk["realised_return"].std() / np.sqrt(len(chunk))
        assert row.hi - row.realised == pytest.approx(half, rel=1e-6)
        assert row.hit_rate == pytest.approx(chunk["hit"].mean())
    assert (calib["n"] >= st.MIN_BIN).all() and (calib["lo"] <= calib["realised"]).all()
    # Predicted returns ascend by bin; a model with an edge moves the realised mean with
    # them (same sign at the ends), at ~10x the predicted scale here.
    assert calib["predicted"].is_monotonic_increasing
    assert calib["realised"].iloc[0] < 0 < calib["realised"].iloc[-1]
    assert st.calibration(_scored(db_url, TINY)[0]).empty  # 2 outcomes: no bins at all
    assert st.calibration(scored.iloc[:0]).empty


def test_rolling_lines_need_a_full_window(db_url: str) -> None:
    scored, window = _scored(db_url, sample.BACKTEST_A)
    assert window == mp.ROLLING
    first = scored["rolling_accuracy"].first_valid_index()
    assert first is not None and scored["hit"].iloc[: first + 1].notna().sum() == window
    hist = st.confidence_histogram(scored)
    assert hist["count"].sum() == 300 and hist["hit_rate"].dropna().between(0, 1).all()
    assert hist["scored"].sum() == scored["hit"].notna().sum()
    hit = scored["hit"].to_numpy()
    bin_of = np.minimum((scored["confidence"].to_numpy() * 20).astype(int), 19)
    top = hist.iloc[19]
    assert top["hit_rate"] == pytest.approx(np.nanmean(hit[bin_of == 19]))
    assert st.coin_flip_band(100) == pytest.approx(0.098)
    # Long runs are drawn as a uniform sample that keeps both ends.
    frame = pd.DataFrame({"x": np.arange(LONG_BARS)})
    drawn = st.uniform_sample(frame)["x"]
    assert len(drawn) <= st.MAX_POINTS + 1 and drawn.iloc[0] == 0
    assert drawn.iloc[-1] == LONG_BARS - 1 and set(np.diff(drawn.iloc[:-1])) == {20}


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


@pytest.mark.postgres
def test_same_reading_on_postgresql(pg_url: str) -> None:
    """Counts, the opening run, min_confidence from JSON columns and the scores are the
    same on PostgreSQL (compact series as bytea, config/parameters as JSON)."""
    sample.seed(pg_url)
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        _long_run(conn, datetime.now(UTC))
        _tiny_run(conn, datetime.now(UTC))
    engine.dispose()
    try:
        with readonly_engine(pg_url).connect() as conn:
            found = mp.runs_with_predictions(conn)
            assert {r["id"]: r["predictions"] for r in found} == {
                TINY: 3,
                LONG: LONG_BARS,
                sample.BACKTEST_A: 300,
            }
            assert mp.default_run(found) == LONG
            assert (mp.min_confidence(conn, LONG), mp.min_confidence(conn, TINY)) == (0.3, 0.45)
            assert mp.runs_total(conn) == 6
        scored, window = _scored(pg_url, LONG)
        summary = mp.summarise(scored, recorded=LONG_BARS)
        assert window == 1000 and summary.hits_n > 99_000 and sample_warnings(summary, window) == []
    finally:
        dispose_all()


# --- in Chromium -------------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(chromium_path() is None, reason="chromium not installed")
# Chart text is drawn on canvas, so the page is read through BokehJS's own views: each
# axis's tick labels as its formatter renders them, each annotation and figure by name.
VIEWS_JS = """
() => {
  const all = [];
  const walk = (v) => { all.push(v); for (const c of [...(v.children_views?.() ?? [])]) walk(c); };
  [...Bokeh.index].forEach(walk);
  const figures = all.filter(v => v.model.type === "Figure");
  const owner = (axis) => figures.find(f =>
    [...f.model.left, ...f.model.below, ...f.model.right, ...f.model.above].includes(axis));
  const axes = all.filter(v => v.model.type.endsWith("Axis")).map(v => ({
    figure: owner(v.model)?.model.name ?? null,
    labels: v.compute_labels(v.tick_coords.major[v.dimension]).items.map(t => t.text),
  }));
  const spans = all.filter(v => v.model.type === "Span" && v.model.name)
    .map(v => ({name: v.model.name, location: v.model.location}));
  const done = Object.fromEntries(figures.map(f => [f.model.name, f.has_finished()]));
  const calib = figures.find(f => f.model.name === "calibration");
  const points = calib ? calib.model.renderers
    .filter(r => r.glyph.type === "Scatter").map(r => r.data_source.get_length()) : [];
  return {axes, spans, done, calibration_points: points};
}
"""
FIGURES = {
    "return_scatter",
    "calibration",
    "rolling_accuracy",
    "rolling_skill",
    "confidence",
    "hit_rate_by_confidence",
}


@pytest.fixture(scope="module")
def served(db_url: str) -> Iterator[tuple[DashboardServer, Any]]:
    """The page served over the several-run database, and a Chromium to read it with."""
    settings = DashboardSettings(db_url=db_url, update_interval=0.5)
    factory = app_factory(find("market_prediction"))
    srv = DashboardServer({"market_prediction": lambda: factory(settings)}, port=0)
    srv.start()
    try:
        with chromium() as browser:
            yield srv, browser
    finally:
        srv.stop()


def _charts(page: Any, figures: set[str] = FIGURES) -> dict[str, Any]:
    """The page's Bokeh views once every one of `figures` has rendered."""
    page.wait_for_function(
        f"() => {sorted(figures)!r}.every(n => ({VIEWS_JS})().done[n] === true)",
        timeout=60_000,
    )
    views: dict[str, Any] = page.evaluate(VIEWS_JS)
    return views


def _open(served: tuple[DashboardServer, Any]) -> tuple[Any, Any]:
    """The page at 1440×900 (a laptop screen), once its body is built."""
    server, browser = served
    page, log = new_page(browser, width=1440, height=900)
    page.goto(server.app_url("market_prediction"))
    page.wait_for_selector("text=Feature diagnostics", timeout=60_000)
    return page, log


def _no_exponents(views: dict[str, Any], axes: int = 10) -> None:
    labels = [label for axis in views["axes"] for label in axis["labels"]]
    assert len(views["axes"]) >= axes and labels
    assert [x for x in labels if "e+" in x or "e-" in x] == []


def _shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))
    page.screenshot(path=str(SCREENSHOTS / f"{name}-full.png"), full_page=True)


@pytest.mark.browser
@needs_chromium
def test_page_opens_on_the_long_run_readable(served: tuple[DashboardServer, Any]) -> None:
    page, log = _open(served)
    views = _charts(page)
    # The long run, not the newest 3-prediction session; and the rule is on the page.
    assert page.locator("#kpi-predictions .value").inner_text().startswith("100,000")
    assert "at least 100 predictions" in page.locator("#run-rule").inner_text()
    assert page.locator("#sample-warnings").count() == 0
    _no_exponents(views)
    by_figure = {a["figure"]: a["labels"] for a in views["axes"]}
    assert all(x.endswith("%") for x in by_figure["calibration"])  # returns in percent
    assert any("," in x for x in by_figure["confidence"])  # counts with separators
    # On the histogram and on the hit rate by confidence.
    assert views["spans"].count({"name": "min_confidence", "location": 0.3}) == 2
    assert views["calibration_points"] == [10]
    _shot(page, "market_prediction")
    assert log.errors() == [], log.console
    assert log.foreign_hosts({"127.0.0.1"}) == []
    page.close()


@pytest.mark.browser
@needs_chromium
def test_three_predictions_say_not_meaningful(served: tuple[DashboardServer, Any]) -> None:
    page, log = _open(served)
    select = page.locator("select").first
    tiny = next(o for o in select.locator("option").all_inner_texts() if "· 3 predictions" in o)
    select.select_option(label=tiny)
    page.wait_for_selector("#sample-warnings", timeout=30_000)
    warning = page.locator("#sample-warnings").inner_text()
    assert "Directional accuracy" in warning and "not meaningful" in warning
    accuracy = page.locator("#kpi-accuracy")
    assert "not meaningful" in accuracy.inner_text()
    assert "warn" in (accuracy.get_attribute("class") or "")
    page.wait_for_function(
        f"() => ({VIEWS_JS})().spans.some(s => s.location === 0.45)", timeout=30_000
    )
    views = _charts(page, {"return_scatter", "confidence"})
    _no_exponents(views, 4)
    # Too few outcomes for a calibration or a rolling window: a line says so instead.
    assert "calibration" not in views["done"] and "rolling_accuracy" not in views["done"]
    page.get_by_text("Calibration: not drawn").wait_for(timeout=10_000)
    page.get_by_text("Rolling directional accuracy and error skill: not drawn").wait_for()
    page.get_by_text("Hit rate by confidence: not drawn").wait_for()
    _shot(page, "market_prediction-3-predictions")
    assert log.errors() == [], log.console
    page.close()


@pytest.mark.browser
@needs_chromium
def test_a_paper_session_updates_without_reload(
    served: tuple[DashboardServer, Any], db_url: str
) -> None:
    """Left open on a running session: its new predictions are scored and a new session
    joins the run list, without a reload."""
    page, log = _open(served)
    select = page.locator("select").first
    tiny = next(o for o in select.locator("option").all_inner_texts() if TINY[:8] in o)
    select.select_option(label=tiny)
    page.locator("#kpi-predictions .value:text-is('3')").wait_for(timeout=30_000)
    engine = create_engine(db_url)
    with engine.begin() as conn:
        _predict(conn, TINY, datetime.now(UTC), 2)
        _tiny_run(conn, datetime.now(UTC), "paper-ml-new-0001", 2)
    engine.dispose()
    page.locator("#kpi-predictions .value:text-is('5')").wait_for(timeout=30_000)
    # Panel renders the select in a shadow root: a locator (not querySelector) reaches it.
    select.locator("option", has_text="· 2 predictions").wait_for(state="attached")
    assert select.input_value().endswith("· 5 predictions")  # still the watched session
    assert log.errors() == [], log.console
    page.close()
