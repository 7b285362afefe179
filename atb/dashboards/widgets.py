"""Shared Panel/Bokeh building blocks: KPI cards, empty states, tables, time-series figures.

Plain HTML panes for KPIs (one small model, re-rendered per update) instead of one
indicator widget per figure: fewer Bokeh models means a faster first paint. No template
and no web fonts: every resource comes from the dashboard server itself.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.models.widgets.tables import (
    DataTable,
    DateFormatter,
    NumberFormatter,
    StringFormatter,
    TableColumn,
)
from bokeh.plotting import figure

if TYPE_CHECKING:
    from bokeh.models.sources import DataDict

CSS = """
.atb-header { display:flex; align-items:baseline; gap:1em; margin:0 0 .3em 0; }
.atb-header h1 { font-size:1.4em; margin:0; }
.atb-header .atb-sub { color:#666; font-size:.9em; }
.atb-kpis { display:flex; flex-wrap:wrap; gap:.5em; }
.atb-kpi { border:1px solid #ddd; border-radius:6px; padding:.35em .7em; min-width:8.5em;
           background:#fafafa; }
.atb-kpi .label { font-size:.75em; color:#666; text-transform:uppercase; letter-spacing:.03em; }
.atb-kpi .value { font-size:1.25em; font-weight:600; font-variant-numeric:tabular-nums; }
.atb-kpi.good .value { color:#1a7f37; } .atb-kpi.bad .value { color:#c62828; }
.atb-kpi.warn .value { color:#b26a00; }
.atb-empty { border:1px dashed #bbb; border-radius:6px; padding:1em; color:#444;
             background:#fcfcfc; }
.atb-empty code { background:#eee; padding:.1em .3em; border-radius:3px; }
.atb-section { font-size:1.05em; font-weight:600; margin:.6em 0 .1em 0; }
.atb-strip { display:flex; flex-wrap:wrap; gap:.35em; margin:.2em 0; }
.atb-chip { border:1px solid #ccc; border-radius:14px; padding:.15em .7em; font-size:.85em;
            background:#f6f6f6; font-variant-numeric:tabular-nums; }
.atb-chip .label { color:#555; font-weight:600; }
.atb-chip.good { border-color:#1a7f37; background:#eef8f0; }
.atb-chip.warn { border-color:#b26a00; background:#fff6e5; }
.atb-chip.bad { border-color:#c62828; background:#fdecec; }
.atb-chip.alert.bad .label { color:#c62828; }
.atb-chip b.bad { color:#c62828; }
.atb-details { font-family:monospace; font-size:.8em; white-space:pre-wrap; max-height:16em;
               overflow:auto; background:#f7f7f7; border:1px solid #ddd; padding:.4em; }
"""


def after_first_paint(build: Callable[[], None]) -> None:
    """Run `build` once the page is on screen (in a server session), else right away.

    Bokeh figures and tables are most of a page's models; building them after the KPIs
    are visible keeps first meaningful paint inside its 2 s budget.
    """
    doc = pn.state.curdoc
    if doc is not None and doc.session_context is not None:
        pn.state.onload(build)
    else:
        build()


def fmt_money(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:+,.2f}" if signed else f"{value:,.2f}"


def fmt_pct(value: float | None, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value * 100:+.2f}%" if signed else f"{value * 100:.2f}%"


def fmt_num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def fmt_age(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "–"
    now = now or datetime.now(UTC)
    seconds = max(0.0, (now - when).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h ago"
    return f"{seconds / 86400:.0f} d ago"


def tone(value: float | None, invert: bool = False) -> str:
    if value is None or value == 0:
        return ""
    return ("bad" if value > 0 else "good") if invert else ("good" if value > 0 else "bad")


Kpi = tuple[str, str, str, str]
"""(id, label, formatted value, tone: '' | good | bad | warn)."""


def kpi_html(items: Iterable[Kpi]) -> str:
    cards = [
        f'<div class="atb-kpi {t}" id="kpi-{k}" data-kpi="{k}"'
        f"{' data-filled' if value not in ('–', '') else ''}>"
        f'<div class="label">{html.escape(label)}</div>'
        f'<div class="value">{html.escape(value)}</div></div>'
        for k, label, value, t in items
    ]
    return f'<div class="atb-kpis">{"".join(cards)}</div>'


def empty_state(title: str, hint: str, command: str | None = None) -> str:
    cmd = f"<p><code>{html.escape(command)}</code></p>" if command else ""
    return (
        f'<div class="atb-empty" data-empty="true"><b>{html.escape(title)}</b>'
        f"<p>{html.escape(hint)}</p>{cmd}</div>"
    )


def header(title: str, subtitle: str = "") -> pn.pane.HTML:
    sub = f'<span class="atb-sub">{html.escape(subtitle)}</span>' if subtitle else ""
    return pn.pane.HTML(
        f'<div class="atb-header"><h1>{html.escape(title)}</h1>{sub}</div>',
        sizing_mode="stretch_width",
        stylesheets=[CSS],
    )


def html_pane(content: str = "", **kwargs: Any) -> pn.pane.HTML:
    return pn.pane.HTML(content, sizing_mode="stretch_width", stylesheets=[CSS], **kwargs)


def empty_page(
    header: pn.viewable.Viewable,
    title: str,
    hint: str,
    command: str | None = None,
    *extra: pn.viewable.Viewable,
) -> pn.Column:
    """A whole page that only says why there is nothing to show (and what to run)."""
    return pn.Column(
        header, html_pane(empty_state(title, hint, command)), *extra, sizing_mode="stretch_width"
    )


def section(title: str) -> pn.pane.HTML:
    return html_pane(f'<div class="atb-section">{html.escape(title)}</div>', margin=(0, 5))


Column = tuple[str, str, str]
"""(field, title, kind: text | money | num | qty | pct | time | int)."""

_FORMATTERS: dict[str, Any] = {
    "money": lambda: NumberFormatter(format="0,0.00"),
    "num": lambda: NumberFormatter(format="0,0.00"),
    # a quantity keeps its significant decimals: 0.00012 BTC is not "0.0000"
    "qty": lambda: NumberFormatter(format="0,0.[00000000]"),
    "pct": lambda: NumberFormatter(format="0.00%"),
    "int": lambda: NumberFormatter(format="0,0"),
    "time": lambda: DateFormatter(format="%Y-%m-%d %H:%M:%S"),
    "text": lambda: StringFormatter(),
}


def empty_frame(columns: Sequence[Column]) -> DataDict:
    return {c[0]: [] for c in columns}


def frame_data(df: pd.DataFrame, columns: Sequence[Column]) -> dict[str, Any]:
    """Column arrays for a ColumnDataSource; NaN/None shown as blanks."""
    data: dict[str, Any] = {}
    for name, _title, kind in columns:
        if name not in df.columns:
            data[name] = [None] * len(df)
            continue
        col = df[name]
        if kind == "text":
            data[name] = col.fillna("").astype(str).to_numpy()
        elif kind == "time":
            data[name] = pd.to_datetime(col).to_numpy()
        else:
            data[name] = pd.to_numeric(col, errors="coerce").to_numpy(dtype=float)
    return data


def data_table(
    source: ColumnDataSource, columns: Sequence[Column], height: int = 260, **kwargs: Any
) -> DataTable:
    cols = [
        TableColumn(field=name, title=title, formatter=_FORMATTERS[kind]())
        for name, title, kind in columns
    ]
    return DataTable(
        source=source,
        columns=cols,
        height=height,
        sizing_mode="stretch_width",
        index_position=None,
        reorderable=False,  # reordering needs jquery-ui, which Bokeh does not ship
        **kwargs,
    )


def time_figure(title: str, height: int = 280, y_label: str = "", **kwargs: Any) -> Any:
    fig = figure(
        title=title,
        height=height,
        x_axis_type="datetime",
        sizing_mode="stretch_width",
        tools="pan,wheel_zoom,box_zoom,reset",
        active_scroll="wheel_zoom",
        **kwargs,
    )
    fig.yaxis.axis_label = y_label
    fig.toolbar.logo = None
    return fig


def add_hover(
    fig: Any,
    tooltips: list[tuple[str, str]],
    renderers: list[Any] | None = None,
    datetime_field: str | None = "x",
) -> None:
    formatters: dict[str, Any] = {f"@{datetime_field}": "datetime"} if datetime_field else {}
    hover = HoverTool(tooltips=tooltips, formatters=formatters, mode="vline")
    if renderers is not None:
        hover.renderers = renderers
    fig.add_tools(hover)
