"""The backtesting page's charts and panels (Bokeh models from the model's frames).

A run's detail is candles with its trades over equity (with buy & hold) and drawdown, all
on one time axis; a run without trades explains itself from its recorded decisions.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
import pandas as pd
from bokeh.layouts import column
from bokeh.models import ColumnDataSource, FactorRange, LinearColorMapper, Range1d
from bokeh.models.annotations import ColorBar
from bokeh.palettes import Category10_10, Viridis256
from bokeh.plotting import figure

from atb.dashboards import charts
from atb.dashboards.candles import Candles, PriceChart

METRIC_FORMATS = {
    "total_return": ("pct", "{0.00%}"),
    "max_drawdown": ("pct", "{0.00%}"),
    "win_rate": ("pct", "{0.00%}"),
    "buy_and_hold_return": ("pct", "{0.00%}"),
    "num_trades": ("int", "{0,0}"),
}


def metric_format(metric: str) -> tuple[str, str]:
    """(axis kind, hover/number format) of a registry metric."""
    return METRIC_FORMATS.get(metric, ("num", "{0,0.00}"))


def run_charts(
    curve: pd.DataFrame, bars: pd.DataFrame | None, trades: pd.DataFrame, symbol: str
) -> tuple[Any, PriceChart]:
    """Candles with trades above equity (+ buy & hold) and drawdown, x ranges linked."""
    candles = Candles(bars) if bars is not None and len(bars) else None
    price = PriceChart(candles, trades, title=f"{symbol} · candles with trades")
    curves = charts.CurveCharts(curve, x_range=price.fig.x_range, title="Equity vs buy & hold")
    if bars is not None and len(bars) and len(curve):
        curves.add_line(buy_and_hold(bars, curve), "hold", "buy & hold", "#888888")
    curves.finish()
    return column(price.fig, curves.equity, curves.drawdown, sizing_mode="stretch_width"), price


def buy_and_hold(bars: pd.DataFrame, curve: pd.DataFrame) -> pd.DataFrame:
    """The initial equity held in the asset over the curve's time span."""
    start, end = curve["time"].iloc[0], curve["time"].iloc[-1]
    inside = bars[(bars["time"] >= start) & (bars["time"] <= end)]
    if not len(inside):
        return pd.DataFrame({"time": [], "hold": []})
    thinned = charts.downsample(inside, "close", charts.MAX_POINTS)
    hold = float(curve["equity"].iloc[0]) * thinned["close"] / float(inside["close"].iloc[0])
    return pd.DataFrame({"time": thinned["time"], "hold": hold.to_numpy()})


def no_trades_html(why: dict[str, Any] | None) -> str:
    """The "why no trades" panel: what the strategy decided and why nothing was sized."""
    if why is None:
        body = (
            "<p>The run recorded no decisions: the strategy never signalled a buy or sell "
            "on this data (or the run predates decision recording).</p>"
        )
    else:
        reasons = (
            "".join(f"<li><b>{n:,}×</b> {html.escape(r)}</li>" for r, n in why["reasons"])
            or "<li>(no reason recorded)</li>"
        )
        actions = ", ".join(
            f"{html.escape('no order' if a == 'none' else a)}: {n:,}" for a, n in why["actions"]
        )
        body = (
            f"<p>{why['signals']:,} signals ({actions}); {why['zero']:,} were sized to zero."
            f"</p><p>Most common reasons:</p><ul>{reasons}</ul>"
        )
    return (
        '<div class="atb-empty" id="why-no-trades" data-empty="true">'
        f"<b>Why no trades</b>{body}</div>"
    )


def compare_figure(curves: dict[str, pd.DataFrame], labels: dict[str, str]) -> Any:
    """Each run's return since start; the legend sits below the chart, never on it."""
    fig = charts.chart("Return since start", height=320, y_kind="pct", y_label="return")
    series = []
    for i, (rid, curve) in enumerate(curves.items()):
        if not len(curve):
            continue
        src = ColumnDataSource({"time": charts.to_ms(curve["time"]), "ret": curve["return"]})
        fig.line("time", "ret", source=src, color=Category10_10[i % 10], line_width=2,
                 legend_label=labels.get(rid, str(rid)))  # fmt: skip
        series.append((src, "ret", "ret"))
    charts.hover(fig, [("time", charts.TIME_HOVER), ("return", "@ret{+0.00%}")])
    charts.legend_outside(fig, "below")
    charts.fit_y(fig.y_range, [s.data["ret"] for s, _, _ in series],
                 [s.data["ret"] for s, _, _ in series], include_zero=True)  # fmt: skip
    charts.autoscale(fig, series, include_zero=True)
    return fig


def sweep_figure(jobs: pd.DataFrame, params: list[str], metric: str) -> Any:
    """One varying parameter: metric by value; two: a heatmap with values and a colour
    bar; more: jobs in order."""
    y = pd.to_numeric(jobs[metric], errors="coerce")
    kind, fmt = metric_format(metric)
    varying = [p for p in params if jobs[f"param.{p}"].astype(str).nunique() > 1]
    if len(varying) >= 2:
        return _heatmap(jobs, varying[0], varying[1], metric, y, kind, fmt)
    key = varying[0] if varying else "job_num"
    xs = [str(v) for v in (jobs[f"param.{key}"] if varying else jobs["job_num"])]
    fig = figure(
        title=f"{metric} by {key}",
        x_range=FactorRange(factors=sorted(set(xs), key=num_key)),
        height=300,
        sizing_mode="stretch_width",
        tools="hover,save",
        tooltips=[(key, "@x"), (metric, f"@v{fmt}"), ("job", "@job"), ("status", "@status")],
    )
    src: dict[str, Any] = {
        "x": xs,
        "v": y,
        "job": jobs["job_num"],
        "status": jobs["status"].astype(str),
    }
    fig.vbar("x", top="v", width=0.7, source=ColumnDataSource(src))
    if len(y.dropna()):
        lo, hi = float(y.min()), float(y.max())
        fig.y_range = Range1d(start=min(0.0, lo) * 1.1, end=max(0.0, hi) * 1.1 or 1.0)
    charts.axis_format(fig.yaxis, kind)
    fig.xaxis.axis_label = key
    fig.toolbar.logo = None
    return fig


def _heatmap(
    jobs: pd.DataFrame, a: str, b: str, metric: str, y: pd.Series, kind: str, fmt: str
) -> Any:
    xs = [str(v) for v in jobs[f"param.{a}"]]
    ys = [str(v) for v in jobs[f"param.{b}"]]
    fig = figure(
        title=f"{metric} by {a} × {b}",
        x_range=FactorRange(factors=sorted(set(xs), key=num_key)),
        y_range=FactorRange(factors=sorted(set(ys), key=num_key)),
        height=340,
        sizing_mode="stretch_width",
        tools="hover,save",
        tooltips=[(a, "@x"), (b, "@y"), (metric, f"@v{fmt}"), ("status", "@status")],
    )
    finite = y[np.isfinite(y)]
    mapper = LinearColorMapper(
        palette=Viridis256,
        low=float(finite.min()) if len(finite) else 0,
        high=float(finite.max()) if len(finite) else 1,
        nan_color="#dddddd",
    )
    text = [_cell_text(v, kind, s) for v, s in zip(y, jobs["status"], strict=True)]
    src = ColumnDataSource(
        {"x": xs, "y": ys, "v": y, "text": text, "status": jobs["status"].astype(str)}
    )
    fig.rect("x", "y", 1, 1, source=src, fill_color={"field": "v", "transform": mapper},
             line_color="white")  # fmt: skip
    # a light box behind each value keeps it readable on dark and light cells
    box: dict[str, Any] = {"background_fill_color": "white", "background_fill_alpha": 0.6}
    fig.text("x", "y", "text", source=src, text_align="center", text_baseline="middle",
             text_font_size="9pt", text_color="#111", **box)  # fmt: skip
    bar = ColorBar(color_mapper=mapper, title=metric, width=12)
    charts.axis_format(bar, kind)
    fig.add_layout(bar, "right")
    fig.xaxis.axis_label, fig.yaxis.axis_label = a, b
    fig.toolbar.logo = None
    return fig


def _cell_text(value: float, kind: str, status: Any) -> str:
    if value is None or not np.isfinite(value):
        return "failed" if str(status) == "failed" else "–"
    if kind == "pct":
        return f"{value * 100:+.1f}%"
    if kind == "int":
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def num_key(value: str) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)
