"""The market_prediction page's Bokeh figures.

Every numeric axis gets an explicit formatter (percent, thousands separators): Bokeh's
default switches to scientific notation for the small returns a next-bar model predicts.
Long runs are drawn thinned (every k-th point, the count in the title), never truncated.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from bokeh.models import ColumnDataSource, HoverTool, NumeralTickFormatter
from bokeh.models.annotations import Label, Slope, Span
from bokeh.plotting import figure

from atb.dashboards import widgets as w
from atb.dashboards.market_prediction.stats import MIN_BIN, coin_flip_band, uniform_sample

RETURN = "0.000%"
RATE = "0%"
COUNT = "0,0"
MODEL, NAIVE, BASE, WARN = "#1f77b4", "#888888", "#555555", "#c62828"


def _figure(title: str, x_label: str, y_label: str, **kwargs: Any) -> Any:
    fig = figure(
        title=title,
        height=300,
        sizing_mode="stretch_width",
        tools="pan,wheel_zoom,box_zoom,reset",
        **kwargs,
    )
    fig.xaxis.axis_label, fig.yaxis.axis_label = x_label, y_label
    fig.toolbar.logo = None
    return fig


def _formats(fig: Any, x: str | None, y: str) -> None:
    if x is not None:
        fig.xaxis.formatter = NumeralTickFormatter(format=x)
    fig.yaxis.formatter = NumeralTickFormatter(format=y)


def _hover(fig: Any, renderer: Any, tooltips: list[tuple[str, str]]) -> None:
    """Tooltips on one renderer's points (not the vline hover of the time charts)."""
    dated = any("@time" in spec for _, spec in tooltips)
    fig.add_tools(
        HoverTool(
            renderers=[renderer],
            tooltips=tooltips,
            formatters={"@time": "datetime"} if dated else {},
        )
    )


def _shown(total: int, shown: int) -> str:
    return "" if shown >= total else f" ({shown:,} of {total:,} drawn)"


def _diagonal(fig: Any) -> None:
    fig.add_layout(Slope(gradient=1, y_intercept=0, line_color=BASE, line_dash="dashed"))


def return_scatter(scored: pd.DataFrame, calib: pd.DataFrame) -> Any:
    """Each prediction's return against what the next bar did, the calibration curve
    (binned means) over it, and the diagonal a perfect forecast would sit on."""
    known = scored.loc[
        scored["realised_return"].notna() & scored["predicted_return"].notna(),
        ["time", "predicted_return", "realised_return", "confidence"],
    ]
    points = uniform_sample(known)
    fig = _figure(
        "Predicted vs realised next-bar return" + _shown(len(known), len(points)),
        "predicted return",
        "realised return",
        name="return_scatter",
    )
    _formats(fig, RETURN, RETURN)
    dots = fig.scatter(
        "predicted_return",
        "realised_return",
        source=ColumnDataSource(points),
        size=3,
        alpha=0.35,
        color=MODEL,
        legend_label="prediction",
    )
    if len(calib):
        fig.line(
            "predicted",
            "realised",
            source=ColumnDataSource(calib),
            color=WARN,
            line_width=2,
            legend_label="binned mean (calibration)",
        )
    _diagonal(fig)
    _hover(
        fig,
        dots,
        [
            ("time", "@time{%F %H:%M}"),
            ("predicted", "@predicted_return{0.000%}"),
            ("realised", "@realised_return{0.000%}"),
            ("confidence", "@confidence{0.00}"),
        ],
    )
    fig.legend.location = "top_left"
    return fig


def calibration_chart(calib: pd.DataFrame) -> Any:
    """Mean realised return per predicted-return bin with its 95 % interval."""
    n = int(calib["n"].sum()) if len(calib) else 0
    fig = _figure(
        f"Calibration: realised vs predicted return, {len(calib)} equal-count bins "
        f"(n={n:,}, 95 % intervals)",
        "mean predicted return",
        "mean realised return",
        name="calibration",
    )
    _formats(fig, RETURN, RETURN)
    src = ColumnDataSource(calib)
    fig.segment("predicted", "lo", "predicted", "hi", source=src, color=WARN, alpha=0.6)
    fig.line("predicted", "realised", source=src, color=WARN, line_width=2)
    pts = fig.scatter(
        "predicted",
        "realised",
        source=src,
        size=9,
        color=WARN,
        legend_label=f"bin mean (≥ {MIN_BIN} each)",
    )
    _diagonal(fig)
    fig.add_layout(Span(location=0, dimension="width", line_color=NAIVE, line_width=1))
    _hover(
        fig,
        pts,
        [
            ("predicted", "@predicted{0.000%}"),
            ("realised", "@realised{0.000%} (@lo{0.000%} to @hi{0.000%})"),
            ("direction hit rate", "@hit_rate{0.0%}"),
            ("predictions", "@n{0,0}"),
        ],
    )
    fig.legend.location = "top_left"
    return fig


def _time_series(scored: pd.DataFrame, columns: list[str]) -> tuple[pd.DataFrame, str]:
    drawn = scored.loc[scored[columns[0]].notna(), ["time", *columns]]
    thinned = uniform_sample(drawn)
    return thinned, _shown(len(drawn), len(thinned))


def rolling_accuracy_chart(scored: pd.DataFrame, window: int) -> Any:
    """Directional hit rate over the last `window` predictions against the coin flip's
    50 % and its 95 % noise band: a line inside the band shows no edge."""
    drawn, shown = _time_series(scored, ["rolling_accuracy"])
    src = ColumnDataSource(drawn)
    band = coin_flip_band(window)
    fig = w.time_figure(
        f"Directional accuracy, rolling {window:,} predictions{shown}",
        height=260,
        y_label="hit rate",
        name="rolling_accuracy",
    )
    _formats(fig, None, RATE)
    base = ColumnDataSource(
        pd.DataFrame({"time": drawn["time"], "lo": 0.5 - band, "hi": 0.5 + band, "mid": 0.5})
    )
    fig.varea(
        "time",
        "lo",
        "hi",
        source=base,
        color=NAIVE,
        alpha=0.15,
        legend_label=f"coin flip 95 % range (±{band * 100:.1f} pp)",
    )
    fig.line(
        "time", "mid", source=base, color=BASE, line_dash="dashed", legend_label="coin flip 50 %"
    )
    acc = fig.line(
        "time", "rolling_accuracy", source=src, color=MODEL, line_width=2, legend_label="model"
    )
    w.add_hover(
        fig,
        [("time", "@time{%F %H:%M}"), ("hit rate", "@rolling_accuracy{0.0%}")],
        renderers=[acc],
        datetime_field="time",
    )
    fig.legend.location = "top_left"
    return fig


def rolling_skill_chart(scored: pd.DataFrame, window: int, x_range: Any) -> Any:
    """The share of the "no change" forecast's error (the size of the move itself) the
    model removes: above 0 it beats "tomorrow's close = today's", below 0 it is worse.
    Drawn as a difference because the two errors differ by a fraction of a percent and
    their lines would lie on top of each other."""
    drawn, shown = _time_series(
        scored, ["rolling_skill", "rolling_abs_error", "rolling_no_change_error"]
    )
    fig = w.time_figure(
        f"Error skill vs the no-change forecast, rolling {window:,} predictions{shown}",
        height=240,
        y_label="1 − model error ÷ no-change error",
        x_range=x_range,
        name="rolling_skill",
    )
    _formats(fig, None, "0.0%")
    src = ColumnDataSource(drawn.assign(zero=0.0))
    fig.line(
        "time",
        "zero",
        source=src,
        color=BASE,
        line_dash="dashed",
        legend_label="no change forecast (0 %)",
    )
    skill = fig.line(
        "time", "rolling_skill", source=src, color=MODEL, line_width=2, legend_label="model"
    )
    w.add_hover(
        fig,
        [
            ("time", "@time{%F %H:%M}"),
            ("skill", "@rolling_skill{+0.00%}"),
            ("model abs error", "@rolling_abs_error{0.000%}"),
            ("no-change abs error", "@rolling_no_change_error{0.000%}"),
        ],
        renderers=[skill],
        datetime_field="time",
    )
    fig.legend.location = "top_left"
    return fig


def _min_confidence_line(fig: Any, min_confidence: float | None, label_y: float) -> None:
    if min_confidence is None:
        return
    fig.add_layout(
        Span(
            location=min_confidence,
            dimension="height",
            line_color=WARN,
            line_width=2,
            line_dash="dashed",
            name="min_confidence",
        )
    )
    fig.add_layout(
        Label(
            x=min_confidence,
            y=label_y,
            x_offset=6,
            text_baseline="top",
            text=f"min_confidence {min_confidence:g}: no position to the left",
            text_color=WARN,
            text_font_size="12px",
            background_fill_color="white",
            background_fill_alpha=0.85,
        )
    )


def hit_rate_by_confidence_chart(hist: pd.DataFrame, min_confidence: float | None) -> Any:
    """Directional hit rate per confidence bin (bins with ≥ MIN_BIN outcomes) against
    the coin flip: what min_confidence filters out, and whether it should."""
    shown = hist[hist["scored"] >= MIN_BIN]
    fig = _figure(
        f"Direction hit rate by confidence (bins with ≥ {MIN_BIN} outcomes, 95 % intervals)",
        "confidence",
        "hit rate",
        name="hit_rate_by_confidence",
        x_range=(0, 1),
    )
    _formats(fig, "0.00", "0.0%")
    src = ColumnDataSource(shown)
    fig.segment("mid", "lo", "mid", "hi", source=src, color=MODEL, alpha=0.6)
    pts = fig.scatter("mid", "hit_rate", source=src, size=8, color=MODEL, legend_label="model")
    fig.add_layout(Span(location=0.5, dimension="width", line_color=BASE, line_dash="dashed"))
    _hover(
        fig,
        pts,
        [
            ("confidence", "@left{0.00}–@right{0.00}"),
            ("hit rate", "@hit_rate{0.0%} (@lo{0.0%} to @hi{0.0%})"),
            ("outcomes", "@scored{0,0}"),
        ],
    )
    top = float(shown["hi"].max()) if len(shown) else 0.5
    _min_confidence_line(fig, min_confidence, max(top, 0.5))
    fig.legend.location = "bottom_right"
    return fig


def confidence_chart(hist: pd.DataFrame, min_confidence: float | None) -> Any:
    """Predictions per confidence bin, with the run's min_confidence: ml_basic opens no
    position for a prediction left of the line."""
    fig = _figure(
        f"Confidence distribution (n={int(hist['count'].sum()):,})",
        "confidence",
        "predictions",
        name="confidence",
    )
    _formats(fig, "0.00", COUNT)
    fig.yaxis.ticker.min_interval = 1  # counts: no 0.2-prediction ticks on a small run
    bars = fig.quad(
        top="count",
        bottom=0,
        left="left",
        right="right",
        source=ColumnDataSource(hist),
        fill_color="#6baed6",
        line_color="white",
    )
    _hover(
        fig,
        bars,
        [
            ("confidence", "@left{0.00}–@right{0.00}"),
            ("predictions", "@count{0,0}"),
            ("direction hit rate", "@hit_rate{0.0%}"),
        ],
    )
    _min_confidence_line(fig, min_confidence, float(hist["count"].max()) if len(hist) else 0.0)
    return fig
