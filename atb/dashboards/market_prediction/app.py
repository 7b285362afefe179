"""The market_prediction page: is the model's forecast worth anything, and is it still
seeing the market it was trained on?

Predicted vs realised next-bar return with a calibration curve, rolling directional
accuracy against the coin flip's 50 %, the model's error against "no change", the
confidence distribution with the run's min_confidence, the model's holdout scores from
its metadata, and feature drift against the training period. The page opens on the
newest run with enough predictions to score (model.default_run) and marks every figure
computed from too few outcomes.
"""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource

from atb.dashboards import widgets as w
from atb.dashboards.guard import in_document, log_failure
from atb.dashboards.market_prediction import charts
from atb.dashboards.market_prediction import diagnostics as dg
from atb.dashboards.market_prediction import model as m
from atb.dashboards.market_prediction import stats as st
from atb.dashboards.readonly import DatabaseMissing, describe, readonly_engine, table_names
from atb.dashboards.settings import DashboardSettings
from atb.dashboards.tables import run_label

RUN_CMD = "python -m atb strategy=ml_basic"
DRIFT_COLS: list[w.Column] = [
    ("feature", "Feature", "text"),
    ("train_mean", "Train mean", "text"),
    ("train_std", "Train σ", "text"),
    ("train_p01", "Train p01", "text"),
    ("train_p99", "Train p99", "text"),
    ("now_mean", "Recent mean", "text"),
    ("now_std", "Recent σ", "text"),
    ("z", "Shift (σ)", "num"),
    ("outside_share", "Outside p01–p99", "pct"),
    ("drift_text", "Drift", "text"),
]
RELIST_POLLS = 12
RESHOW_POLLS = 6
RULE = (
    f"Opens on the newest run with at least {m.MIN_SAMPLES} predictions (fewer score "
    "nothing meaningful); when none has that many, on the one with the most."
)


def summary_kpis(
    s: m.Summary,
    meta: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    buy_and_hold: float | None = None,
) -> list[w.Kpi]:
    hold = (meta or {}).get("holdout") or {}
    # No colour for the holdout hit rate: a point above 50 % is not an edge by itself;
    # the baselines table on the page says what it has to beat.
    hold_acc = hold.get("directional_accuracy")
    metrics = metrics or {}
    total, bh = metrics.get("total_return"), buy_and_hold
    vs_tone = "" if total is None or bh is None else ("good" if total > bh else "bad")
    shown = f"{s.predictions:,}"
    if s.recorded > s.predictions:
        shown = f"{s.recorded:,} (newest {s.predictions:,} scored)"
    return [
        ("predictions", "Predictions", shown, "warn" if st.sample_note(s.predictions) else ""),
        _sampled(
            "accuracy",
            "Directional accuracy",
            w.fmt_pct(s.accuracy),
            s.hits_n,
            _edge_tone(s.accuracy, s.hits_n),
        ),
        _sampled("mae", "Mean abs error", w.fmt_pct(s.mae_pct), s.errors_n),
        _sampled("confidence", "Mean confidence", w.fmt_num(s.mean_confidence, 3), s.confidence_n),
        ("holdout", "Holdout hit rate (coin flip 50%)", w.fmt_pct(hold_acc), ""),
        (
            "vs_buy_hold",
            "Return / buy & hold",
            f"{w.fmt_pct(total, True)} / {w.fmt_pct(bh, True)}",
            vs_tone,
        ),
        _sampled(
            "drift",
            "Drifting features",
            f"{s.drifting} of {s.features_checked}" if s.features_checked else "–",
            s.features_n,
            ("bad" if s.drifting else "good") if s.features_checked else "",
        ),
        ("model", "Model", s.model_id or "–", ""),
    ]


def _sampled(key: str, label: str, value: str, n: int, tone: str = "") -> w.Kpi:
    """A KPI computed from `n` outcomes: the count in its label, and in its value (amber)
    when there are too few to read it."""
    note = st.sample_note(n)
    if note and value != "–":
        return (key, label, f"{value} — {note}", "warn")
    return (key, f"{label} · n={n:,}" if n else label, value, tone)


def _edge_tone(rate: float | None, n: int) -> str:
    """Green/red only when the hit rate is outside the coin flip's 95 % range."""
    if rate is None or n == 0:
        return ""
    if abs(rate - 0.5) <= st.coin_flip_band(n):
        return ""
    return "good" if rate > 0.5 else "bad"


def sample_warnings(s: m.Summary, window: int) -> list[str]:
    """One line per figure on the page that rests on too few outcomes."""
    out = []
    for label, value, n in (
        ("Directional accuracy", w.fmt_pct(s.accuracy), s.hits_n),
        ("Mean abs error", w.fmt_pct(s.mae_pct), s.errors_n),
        ("Mean confidence", w.fmt_num(s.mean_confidence, 3), s.confidence_n),
    ):
        note = st.sample_note(n)
        if note and value != "–":
            out.append(f"{label} {value} — {note} (needs ≥ {m.MIN_SAMPLES} outcomes).")
    if s.hits_n < window:
        out.append(
            f"Rolling accuracy and error skill need {window:,} scored predictions; "
            f"this run has {s.hits_n:,}, so they are not drawn."
        )
    if 0 < s.errors_n < st.MIN_BIN:
        out.append(
            f"Calibration needs ≥ {st.MIN_BIN} scored predictions; this run has "
            f"{s.errors_n:,}, so it is not drawn."
        )
    if s.features_checked and st.sample_note(s.features_n):
        out.append(
            f"Feature drift compares only {s.features_n:,} recent bars with the training "
            "period: not meaningful."
        )
    return out


def warnings_html(lines: list[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{escape(line)}</li>" for line in lines)
    return (
        '<div id="sample-warnings" class="atb-empty" role="status" '
        'style="border-color:#b26a00;color:#7a4800;background:#fff8e6">'
        f"<b>⚠ Too few samples to read:</b><ul style='margin:.3em 0'>{items}</ul></div>"
    )


class PredictionApp:
    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.engine: Any = None
        self.run = pn.widgets.Select(label="Run", options={}, width=720)
        self.rule = w.html_pane("")
        self.kpis = w.html_pane(w.kpi_html(summary_kpis(m.Summary())))
        self.notice = w.html_pane("")
        self.warnings = w.html_pane("")
        self.body = pn.Column(sizing_mode="stretch_width")
        self.ready = False
        self.scored = pd.DataFrame()
        self.drift = pd.DataFrame()
        self.meta: dict[str, Any] | None = None
        self.metrics: dict[str, Any] = {}
        self.min_confidence: float | None = None
        self.window = m.ROLLING
        self.summary = m.Summary()
        self.counts: dict[str, int] = {}
        self.runs_seen = 0
        self.polls = 0
        self.shown_poll = -RESHOW_POLLS

    def view(self) -> pn.viewable.Viewable:
        header = w.header("atb · market prediction", describe(self.settings.db_url))
        try:
            self.engine = readonly_engine(self.settings.db_url)
        except DatabaseMissing as exc:
            return w.empty_page(
                header,
                str(exc),
                "Run the ml_basic strategy; its predictions are recorded per bar.",
                RUN_CMD,
            )
        if "predictions" not in table_names(self.engine):
            return w.empty_page(
                header, "The database has no prediction table yet.", "Run the ml strategy:", RUN_CMD
            )
        with self.engine.connect() as conn:
            found = m.runs_with_predictions(conn)
            self.runs_seen = m.runs_total(conn)
        if not found:
            return w.empty_page(
                header,
                "No recorded predictions.",
                "Run the ml strategy (backtest or paper):",
                RUN_CMD,
            )
        self._list_runs(found)
        self.run.value = m.default_run(found)
        skipped = next(i for i, r in enumerate(found) if r["id"] == self.run.value)
        self.rule.object = f"<small id='run-rule'>{escape(RULE)}" + (
            f" {skipped} newer run(s) with fewer are in the list.</small>"
            if skipped
            else "</small>"
        )
        self.run.param.watch(in_document(self.show, self.notice, "showing the run"), "value")
        self.show()
        w.after_first_paint(self._build)
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            period = max(500, int(self.settings.update_interval * 1000))
            pn.state.add_periodic_callback(self.refresh, period=period)
        return pn.Column(
            header,
            self.notice,
            self.run,
            self.rule,
            self.kpis,
            self.warnings,
            self.body,
            sizing_mode="stretch_width",
        )

    def _list_runs(self, found: list[dict[str, Any]]) -> None:
        self.counts = {r["id"]: r["predictions"] for r in found}
        self.run.options = {
            f"{run_label(r)} · {r['predictions']:,} predictions": r["id"] for r in found
        }

    def refresh(self) -> None:
        """Periodic: new runs join the list (at once when a run is added, else within 12
        polls: a paper session records its first prediction after it starts), and the
        open run is re-read when it has recorded more predictions, at most every 6 polls
        so a 1-minute session does not reset the charts' zoom every minute."""
        run_id = self.run.value
        self.polls += 1
        try:
            with self.engine.connect() as conn:
                now = m.prediction_counts(conn, [run_id]).get(run_id, 0)
                total = m.runs_total(conn)
                relist = total != self.runs_seen or self.polls % RELIST_POLLS == 0
                found = m.runs_with_predictions(conn) if relist else None
        except Exception as exc:  # a DB hiccup must not kill the session's callback
            log_failure("market_prediction refresh", exc)
            return
        self.runs_seen = total
        if found:
            self._list_runs(found)
        if now != self.summary.recorded and self.polls - self.shown_poll >= RESHOW_POLLS:
            self.counts[run_id] = now
            self.show()

    def _build(self) -> None:
        self.ready = True
        self._render()

    def show(self) -> None:
        run_id = self.run.value
        self.shown_poll = self.polls
        with self.engine.connect() as conn:
            preds = m.load_predictions(conn, run_id, limit=m.PAGE_LIMIT)
            candles = m.run_candles(conn, run_id)
            self.metrics = m.run_metrics(conn, run_id)
            self.min_confidence = m.min_confidence(conn, run_id)
        self.window = m.rolling_window(len(preds))
        self.scored = m.score(preds, self.window)
        ids = self.scored["model_id"].dropna() if len(self.scored) else pd.Series(dtype=object)
        self.meta = m.find_metadata(str(ids.iloc[-1]) if len(ids) else None)
        self.drift = dg.feature_drift(self.meta, dg.recent_features(self.scored, candles))
        self.summary = m.summarise(self.scored, self.drift, self.counts.get(run_id))
        self.kpis.object = w.kpi_html(
            summary_kpis(
                self.summary, self.meta, self.metrics, m.buy_and_hold(self.metrics, self.scored)
            )
        )
        self.warnings.object = warnings_html(sample_warnings(self.summary, self.window))
        if self.ready:
            self._render()

    def _render(self) -> None:
        # Binned after first paint: at 200k predictions it is a sort the KPIs need not wait on.
        scored, n = self.scored, self.summary.errors_n
        calib = st.calibration(scored)
        hist = st.confidence_histogram(scored)
        self.body.objects = [
            w.section("Model vs naive baselines"),
            w.html_pane(
                baseline_table(
                    dg.baseline_rows(self.meta, self.metrics, self.summary, scored), self.meta
                )
            ),
            w.section("Forecast vs outcome"),
            pn.Row(
                pn.pane.Bokeh(charts.return_scatter(scored, calib), sizing_mode="stretch_width"),
                _chart_or_note(
                    charts.calibration_chart(calib) if len(calib) else None,
                    "Calibration",
                    f"needs at least {st.MIN_BIN} scored predictions; this run has {n:,}.",
                ),
                sizing_mode="stretch_width",
            ),
            *self._rolling_part(),
            pn.Row(
                pn.pane.Bokeh(
                    charts.confidence_chart(hist, self.min_confidence), sizing_mode="stretch_width"
                ),
                _chart_or_note(
                    charts.hit_rate_by_confidence_chart(hist, self.min_confidence)
                    if (hist["scored"] >= st.MIN_BIN).any()
                    else None,
                    "Hit rate by confidence",
                    f"needs a confidence bin with at least {st.MIN_BIN} scored predictions.",
                ),
                sizing_mode="stretch_width",
            ),
            w.html_pane(self._confidence_note()),
            w.section("Feature diagnostics: recent inputs vs the training period"),
            *self._drift_part(),
        ]

    def _rolling_part(self) -> list[Any]:
        scored = self.scored
        if not (len(scored) and scored["rolling_accuracy"].notna().any()):
            return [
                _chart_or_note(
                    None,
                    "Rolling directional accuracy and error skill",
                    f"need {self.window:,} scored predictions (one full window); this run "
                    f"has {self.summary.hits_n:,}.",
                )
            ]
        accuracy = charts.rolling_accuracy_chart(scored, self.window)
        skill = charts.rolling_skill_chart(scored, self.window, accuracy.x_range)
        return [
            pn.pane.Bokeh(accuracy, sizing_mode="stretch_width"),
            pn.pane.Bokeh(skill, sizing_mode="stretch_width"),
        ]

    def _confidence_note(self) -> str:
        if self.min_confidence is None:
            return (
                "<small>This run recorded no min_confidence (strategy parameters or "
                "config), so no threshold is drawn.</small>"
            )
        conf = pd.to_numeric(self.scored.get("confidence", pd.Series(dtype=float)), errors="coerce")
        conf = conf.dropna()
        share = float((conf < self.min_confidence).mean()) if len(conf) else float("nan")
        return (
            f"<small>min_confidence {self.min_confidence:g} (this run's strategy settings): "
            f"{w.fmt_pct(share)} of predictions fall below it and open no position.</small>"
        )

    def _drift_part(self) -> list[Any]:
        drift = self.drift
        if not len(drift):
            return [
                w.html_pane(
                    w.empty_state(
                        "No feature statistics for this model.",
                        "Feature diagnostics need the model's metadata JSON (atb/ml/models/) "
                        "with feature_stats; retrain to produce it:",
                        "python -m atb mode=train",
                    )
                )
            ]
        shown = drift.assign(drift_text=np.where(drift["drift"], "DRIFT", "ok"))
        for col in ("train_mean", "train_std", "train_p01", "train_p99", "now_mean", "now_std"):
            shown[col] = [dg.fmt_plain(v) for v in shown[col]]
        table = pn.pane.Bokeh(
            w.data_table(
                ColumnDataSource(w.frame_data(shown, DRIFT_COLS)),
                DRIFT_COLS,
                height=40 + 28 * len(shown),
            ),
            sizing_mode="stretch_width",
        )
        period = (self.meta or {}).get("training_period") or {}
        note = w.html_pane(
            f"<small>Training period {str(period.get('start', '?'))[:10]} → "
            f"{str(period.get('end_exclusive', '?'))[:10]} (exclusive); recent = the last "
            "500 bars. A feature "
            f"drifts when its mean moved more than {m.DRIFT_Z:g} training σ or more than "
            "10 % of recent values fall outside the training 1 %–99 % range.</small>"
        )
        return [table, note]


def _chart_or_note(fig: Any, what: str, why: str) -> pn.viewable.Viewable:
    """The figure, or one line saying why there is none (never an empty, axis-less box)."""
    if fig is not None:
        return pn.pane.Bokeh(fig, sizing_mode="stretch_width")
    return w.html_pane(w.empty_state(f"{what}: not drawn", f"{what} {why}"))


def baseline_table(rows: list[tuple[str, str, str]], meta: dict[str, Any] | None) -> str:
    cells = "".join(
        f"<tr><td>{escape(a)}</td><td style='text-align:right'><b>{escape(b)}</b></td>"
        f"<td>{escape(c)}</td></tr>"
        for a, b, c in rows
    )
    if meta is None:
        note = (
            "No metadata JSON for this run's model in atb/ml/models/: its holdout scores "
            "and training statistics are unknown."
        )
    elif meta.get("holdout"):
        note = (
            "Holdout = bars after the model's training period, scored once and never fitted "
            "or selected on (model metadata JSON)."
        )
    else:
        note = (
            "This model's metadata has no holdout scores; retrain to produce them: "
            "python -m atb mode=train"
        )
    return (
        "<table class='baselines'><tr><th>Measure</th><th>Model</th><th>Naive baseline</th>"
        f"</tr>{cells}</table><small>{escape(note)}</small>"
    )


def create_app(settings: DashboardSettings | None = None) -> pn.viewable.Viewable:
    return PredictionApp(settings or DashboardSettings()).view()
