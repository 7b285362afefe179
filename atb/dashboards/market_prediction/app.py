"""The market_prediction page: predicted vs actual price, confidence distribution,
directional accuracy and error over time, and feature drift against the training period."""

from __future__ import annotations

from html import escape
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource

from atb.dashboards import widgets as w
from atb.dashboards.guard import in_document
from atb.dashboards.market_prediction import model as m
from atb.dashboards.readonly import DatabaseMissing, describe, readonly_engine, table_names
from atb.dashboards.settings import DashboardSettings
from atb.dashboards.tables import run_label

RUN_CMD = "python -m atb strategy=ml_basic"
DRIFT_COLS: list[w.Column] = [
    ("feature", "Feature", "text"),
    ("train_mean", "Train mean", "num"),
    ("train_std", "Train σ", "num"),
    ("train_p01", "Train p01", "num"),
    ("train_p99", "Train p99", "num"),
    ("now_mean", "Recent mean", "num"),
    ("now_std", "Recent σ", "num"),
    ("z", "Shift (σ)", "num"),
    ("outside_share", "Outside p01–p99", "pct"),
    ("drift_text", "Drift", "text"),
]


def summary_kpis(
    s: m.Summary,
    meta: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    buy_and_hold: float | None = None,
) -> list[w.Kpi]:
    acc_tone = "" if s.accuracy is None else ("good" if s.accuracy > 0.5 else "bad")
    hold = (meta or {}).get("holdout") or {}
    # No colour for the holdout hit rate: a point above 50 % is not an edge by itself;
    # the baselines table on the page says what it has to beat.
    hold_acc = hold.get("directional_accuracy")
    metrics = metrics or {}
    total, bh = metrics.get("total_return"), buy_and_hold
    vs_tone = "" if total is None or bh is None else ("good" if total > bh else "bad")
    return [
        ("predictions", "Predictions", f"{s.predictions:,}", ""),
        ("accuracy", "Directional accuracy", w.fmt_pct(s.accuracy), acc_tone),
        ("mae", "Mean abs error", w.fmt_pct(s.mae_pct), ""),
        ("confidence", "Mean confidence", w.fmt_num(s.mean_confidence, 3), ""),
        ("holdout", "Holdout hit rate (coin flip 50%)", w.fmt_pct(hold_acc), ""),
        (
            "vs_buy_hold",
            "Return / buy & hold",
            f"{w.fmt_pct(total, True)} / {w.fmt_pct(bh, True)}",
            vs_tone,
        ),
        ("drift", "Drifting features", str(s.drifting), "bad" if s.drifting else "good"),
        ("model", "Model", s.model_id or "–", ""),
    ]


class PredictionApp:
    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.engine: Any = None
        self.run = pn.widgets.Select(label="Run", options={}, width=560)
        self.kpis = w.html_pane(w.kpi_html(summary_kpis(m.Summary())))
        self.notice = w.html_pane("")
        self.body = pn.Column(sizing_mode="stretch_width")
        self.ready = False
        self.scored = pd.DataFrame()
        self.drift = pd.DataFrame()
        self.meta: dict[str, Any] | None = None
        self.metrics: dict[str, Any] = {}
        self.summary = m.Summary()

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
        if not found:
            return w.empty_page(
                header,
                "No recorded predictions.",
                "Run the ml strategy (backtest or paper):",
                RUN_CMD,
            )
        self.run.options = {run_label(r): r["id"] for r in found}
        self.run.value = found[0]["id"]
        self.run.param.watch(in_document(self.show, self.notice, "showing the run"), "value")
        self.show()
        w.after_first_paint(self._build)
        return pn.Column(
            header, self.notice, self.run, self.kpis, self.body, sizing_mode="stretch_width"
        )

    def _build(self) -> None:
        self.ready = True
        self._render()

    def show(self) -> None:
        with self.engine.connect() as conn:
            preds = m.load_predictions(conn, self.run.value)
            candles = m.run_candles(conn, self.run.value)
            self.metrics = m.run_metrics(conn, self.run.value)
        self.scored = m.score(preds)
        meta = m.find_metadata(
            self.scored["model_id"].dropna().iloc[-1]
            if len(self.scored) and self.scored["model_id"].notna().any()
            else None
        )
        self.meta = meta
        self.drift = m.feature_drift(meta, m.recent_features(self.scored, candles))
        self.summary = m.summarise(self.scored, self.drift)
        self.kpis.object = w.kpi_html(
            summary_kpis(
                self.summary, meta, self.metrics, m.buy_and_hold(self.metrics, self.scored)
            )
        )
        if self.ready:
            self._render()

    def _render(self) -> None:
        scored = self.scored
        src = ColumnDataSource(
            scored[
                [
                    "time",
                    "close",
                    "predicted_price",
                    "actual_next",
                    "rolling_accuracy",
                    "rolling_abs_error",
                    "confidence",
                ]
            ].assign(pred_time=scored["time"].shift(-1))
        )
        price = w.time_figure("Predicted vs actual close", height=300, y_label="price")
        actual = price.line("time", "close", source=src, color="#333", legend_label="actual close")
        # A prediction made at bar t is for the close of t + 1: draw it where it lands.
        price.scatter(
            "pred_time",
            "predicted_price",
            source=src,
            size=4,
            color="#1f77b4",
            alpha=0.7,
            legend_label="predicted (for next bar)",
        )
        w.add_hover(
            price,
            [
                ("time", "@time{%F %H:%M}"),
                ("close", "@close{0,0.00}"),
                ("predicted next", "@predicted_price{0,0.00}"),
                ("actual next", "@actual_next{0,0.00}"),
                ("confidence", "@confidence{0.000}"),
            ],
            renderers=[actual],
            datetime_field="time",
        )
        price.legend.location = "top_left"

        acc = w.time_figure(
            f"Directional accuracy and error (rolling {m.ROLLING})",
            height=220,
            x_range=price.x_range,
        )
        acc.line("time", "rolling_accuracy", source=src, color="#1a7f37", legend_label="accuracy")
        acc.line(
            "time", "rolling_abs_error", source=src, color="#c62828", legend_label="mean abs error"
        )
        acc.legend.location = "top_left"
        w.add_hover(
            acc,
            [
                ("time", "@time{%F %H:%M}"),
                ("accuracy", "@rolling_accuracy{0.0%}"),
                ("abs error", "@rolling_abs_error{0.000%}"),
            ],
            datetime_field="time",
        )

        hist = m.confidence_histogram(scored)
        conf = _plain_figure("Confidence distribution")
        conf.quad(
            top="count",
            bottom=0,
            left="left",
            right="right",
            source=ColumnDataSource(hist),
            fill_color="#6baed6",
            line_color="white",
        )

        drift = (
            self.drift.assign(drift_text=np.where(self.drift["drift"], "DRIFT", "ok"))
            if len(self.drift)
            else self.drift
        )
        if len(drift):
            table = pn.pane.Bokeh(
                w.data_table(
                    ColumnDataSource(w.frame_data(drift, DRIFT_COLS)),
                    DRIFT_COLS,
                    height=40 + 28 * len(drift),
                ),
                sizing_mode="stretch_width",
            )
            period = (self.meta or {}).get("training_period") or {}
            note = w.html_pane(
                f"<small>Training period {period.get('start', '?')} → "
                f"{period.get('end_exclusive', '?')}; recent = the last 500 bars. A feature "
                f"drifts when its mean moved more than {m.DRIFT_Z:g} training σ or more than "
                "10 % of recent values fall outside the training 1 %–99 % range.</small>"
            )
            drift_part: list[Any] = [table, note]
        else:
            drift_part = [
                w.html_pane(
                    w.empty_state(
                        "No feature statistics for this model.",
                        "Feature diagnostics need the model's metadata JSON (atb/ml/models/) with "
                        "feature_stats; retrain to produce it:",
                        "python -m atb mode=train",
                    )
                )
            ]
        baselines = m.baseline_rows(self.meta, self.metrics, self.summary, scored)
        self.body.objects = [
            w.section("Model vs naive baselines"),
            w.html_pane(baseline_table(baselines, self.meta)),
            pn.pane.Bokeh(price, sizing_mode="stretch_width"),
            pn.pane.Bokeh(acc, sizing_mode="stretch_width"),
            pn.pane.Bokeh(conf, sizing_mode="stretch_width"),
            w.section("Feature diagnostics: recent inputs vs the training period"),
            *drift_part,
        ]


def baseline_table(rows: list[tuple[str, str, str]], meta: dict[str, Any] | None) -> str:
    cells = "".join(
        f"<tr><td>{escape(a)}</td><td style='text-align:right'><b>{escape(b)}</b></td>"
        f"<td>{escape(c)}</td></tr>"
        for a, b, c in rows
    )
    note = (
        "Holdout = bars after the model's training period, scored once and never fitted "
        "or selected on (model metadata JSON)."
        if (meta or {}).get("holdout")
        else "This model's metadata has no holdout scores; retrain to produce them: "
        "python -m atb mode=train"
    )
    return (
        "<table class='baselines'><tr><th>Measure</th><th>Model</th><th>Naive baseline</th>"
        f"</tr>{cells}</table><small>{escape(note)}</small>"
    )


def _plain_figure(title: str) -> Any:
    from bokeh.plotting import figure

    fig = figure(
        title=title,
        height=220,
        sizing_mode="stretch_width",
        tools="pan,wheel_zoom,box_zoom,reset,hover",
        tooltips=[("confidence", "@left{0.00}–@right{0.00}"), ("count", "@count")],
    )
    fig.toolbar.logo = None
    return fig


def create_app(settings: DashboardSettings | None = None) -> pn.viewable.Viewable:
    return PredictionApp(settings or DashboardSettings()).view()
