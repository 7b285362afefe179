"""The backtesting dashboard's Bokeh figures: equity and drawdown, price with trades, sweeps."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from bokeh.models import ColumnDataSource, FactorRange, LinearColorMapper, Range1d
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from atb.dashboards import widgets as w


def equity_figure(curve: pd.DataFrame) -> Any:
    src = ColumnDataSource(curve)
    fig = w.time_figure("Equity and drawdown", height=300, y_label="equity")
    eq = fig.line(
        "time", "equity", source=src, color="#1f77b4", line_width=2, legend_label="equity"
    )
    dd = w.time_figure("", height=130, y_label="drawdown", x_range=fig.x_range)
    dd.varea("time", 0, "drawdown", source=src, color="#d62728", alpha=0.35)
    dd.y_range.flipped = True
    w.add_hover(
        fig,
        [
            ("time", "@time{%F %H:%M}"),
            ("equity", "@equity{0,0.00}"),
            ("drawdown", "@drawdown{0.00%}"),
        ],
        renderers=[eq],
        datetime_field="time",
    )
    from bokeh.layouts import column

    return column(fig, dd, sizing_mode="stretch_width")


def price_figure(candles: pd.DataFrame | None, trades: pd.DataFrame) -> Any:
    fig = w.time_figure("Price with entries (▲) and exits (▼)", height=300, y_label="price")
    if candles is not None and len(candles):
        fig.line(
            "time", "close", source=ColumnDataSource(candles), color="#555", legend_label="close"
        )
    if len(trades):
        entries = ColumnDataSource(
            {
                "time": trades["entry_time"],
                "price": trades["entry_price"],
                "side": trades["side"],
                "no": trades["trade_no"],
            }
        )
        exits = ColumnDataSource(
            {
                "time": trades["exit_time"],
                "price": trades["exit_price"],
                "pnl": trades["pnl"],
                "no": trades["trade_no"],
            }
        )
        en = fig.scatter(
            "time",
            "price",
            source=entries,
            marker="triangle",
            size=9,
            color="#1a7f37",
            legend_label="entry",
        )
        ex = fig.scatter(
            "time",
            "price",
            source=exits,
            marker="inverted_triangle",
            size=9,
            color="#c62828",
            legend_label="exit",
        )
        w.add_hover(
            fig,
            [("trade", "#@no"), ("time", "@time{%F %H:%M}"), ("price", "@price{0,0.00}")],
            renderers=[en, ex],
            datetime_field="time",
        )
    if candles is None:
        fig.title.text += " (candles unavailable: the run's data file is not on this host)"
    fig.legend.location = "top_left"
    return fig


def sweep_figure(jobs: pd.DataFrame, params: list[str], metric: str) -> Any:
    """One varying parameter: metric by value; two: a heatmap; more: jobs in order."""
    y = pd.to_numeric(jobs[metric], errors="coerce")
    varying = [p for p in params if jobs[f"param.{p}"].astype(str).nunique() > 1]
    if len(varying) >= 2:
        a, b = varying[:2]
        xs = [str(v) for v in jobs[f"param.{a}"]]
        ys = [str(v) for v in jobs[f"param.{b}"]]
        fig = figure(
            title=f"{metric} by {a} × {b}",
            x_range=FactorRange(factors=sorted(set(xs), key=_num_key)),
            y_range=FactorRange(factors=sorted(set(ys), key=_num_key)),
            height=320,
            sizing_mode="stretch_width",
            tools="hover,save",
            tooltips=[(a, "@x"), (b, "@y"), (metric, "@v{0.0000}")],
        )
        finite = y[np.isfinite(y)]
        mapper = LinearColorMapper(
            palette=Viridis256,
            low=float(finite.min()) if len(finite) else 0,
            high=float(finite.max()) if len(finite) else 1,
        )
        fig.rect(
            "x",
            "y",
            1,
            1,
            source=ColumnDataSource({"x": xs, "y": ys, "v": y}),
            fill_color={"field": "v", "transform": mapper},
            line_color=None,
        )
        fig.toolbar.logo = None
        return fig
    key = varying[0] if varying else "job_num"
    xs = [str(v) for v in (jobs[f"param.{key}"] if varying else jobs["job_num"])]
    fig = figure(
        title=f"{metric} by {key}",
        x_range=FactorRange(factors=sorted(set(xs), key=_num_key)),
        height=300,
        sizing_mode="stretch_width",
        tools="hover,save",
        tooltips=[(key, "@x"), (metric, "@v{0.0000}"), ("job", "@job")],
    )
    fig.vbar(
        "x", top="v", width=0.7, source=ColumnDataSource({"x": xs, "v": y, "job": jobs["job_num"]})
    )
    if len(y.dropna()):
        lo, hi = float(y.min()), float(y.max())
        fig.y_range = Range1d(start=min(0.0, lo) * 1.1, end=max(0.0, hi) * 1.1 or 1.0)
    fig.toolbar.logo = None
    return fig


def _num_key(value: str) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)
