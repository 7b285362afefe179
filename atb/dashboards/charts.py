"""Shared trading charts: candles with trades, linked equity/drawdown, readable axes.

- Axes never use scientific notation: prices and money get thousands separators
  (`110,000`), returns and drawdowns are percent axes (`25%`), counts are integers.
- Candles are aggregated to at most `MAX_CANDLES` per view. Zooming in re-aggregates the
  visible range at a finer resolution on the server (one `RangesUpdate` per gesture,
  numpy `reduceat` over the in-memory bars: a 1M-bar run stays interactive).
- Every chart sharing a time axis shares one `x_range`; a small JS callback refits each
  chart's price axis to what is visible, so zooming into a week shows that week's prices.
- Long curves are downsampled per pixel bucket keeping each bucket's first, last, min and
  max: the drawdown's deepest point and the equity's peaks survive, nothing is truncated.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from bokeh.models import (
    ColumnDataSource,
    CustomJS,
    DatetimeTickFormatter,
    HoverTool,
    NumeralTickFormatter,
    Range1d,
)
from bokeh.plotting import figure

MAX_POINTS = 2000
UP, DOWN, FLAT = "#1a7f37", "#c62828", "#888888"
AXIS_FORMATS = {
    "price": "0,0.[00]",
    "money": "0,0.[00]",
    "qty": "0,0.[000000]",
    "pct": "0.[0]%",
    "pct2": "0.[00]%",
    "int": "0,0",
    "num": "0,0.[00]",
}
HOVER_FORMATS = {
    "price": "{0,0.00}",
    "money": "{0,0.00}",
    "qty": "{0,0.[000000]}",
    "pct": "{0.00%}",
    "int": "{0,0}",
    "num": "{0,0.00}",
}
TIME_HOVER = "@time{%F %H:%M} UTC"


def axis_format(axis: Any, kind: str) -> None:
    """Numeral tick labels (`110,000`, `25%`): never Bokeh's default `1.100e+5`."""
    axis.formatter = NumeralTickFormatter(format=AXIS_FORMATS[kind])


def time_axis(fig: Any) -> None:
    fig.xaxis.formatter = DatetimeTickFormatter(
        hours="%m-%d %H:%M", days="%Y-%m-%d", months="%Y-%m", years="%Y"
    )
    fig.xaxis.axis_label = "time (UTC)"


def chart(
    title: str,
    height: int = 280,
    y_kind: str = "price",
    y_label: str = "",
    x_range: Any = None,
    **kwargs: Any,
) -> Any:
    """A time-series figure with readable axes; `x_range` links it to another chart."""
    extra: dict[str, Any] = {} if x_range is None else {"x_range": x_range}
    fig = figure(
        title=title,
        height=height,
        x_axis_type="datetime",
        sizing_mode="stretch_width",
        tools="xpan,xwheel_zoom,box_zoom,reset,save",
        active_scroll="xwheel_zoom",
        y_range=Range1d(start=0, end=1),
        **extra,
        **kwargs,
    )
    fig.toolbar.logo = None
    fig.yaxis.axis_label = y_label
    axis_format(fig.yaxis, y_kind)
    time_axis(fig)
    return fig


def legend_outside(fig: Any, place: str = "above") -> None:
    """Move the legend off the plot area (a legend on the chart hides the data under it);
    click an entry to hide that series."""
    if not fig.legend:
        return
    legend = fig.legend[0]
    fig.center = [m for m in fig.center if m is not legend]
    legend.orientation = "horizontal"
    legend.click_policy = "hide"
    legend.label_text_font_size = "8pt"
    legend.padding = legend.margin = 2
    fig.add_layout(legend, place)


def hover(
    fig: Any, tooltips: list[tuple[str, str]], renderers: list[Any] | None = None, **kw: Any
) -> None:
    tool = HoverTool(tooltips=tooltips, formatters={"@time": "datetime"}, **kw)
    if renderers is not None:
        tool.renderers = renderers
    fig.add_tools(tool)


# -- fitting the y axis to the visible time range ---------------------------------------
_AUTOSCALE_JS = """
const s = xr.start, e = xr.end;
let lo = Infinity, hi = -Infinity;
for (const [src, low, high] of series) {
  const t = src.data.time, a = src.data[low], b = src.data[high];
  if (t == null || a == null || b == null) continue;
  for (let i = 0; i < t.length; i++) {
    if (t[i] < s || t[i] > e) continue;
    const x = a[i], y = b[i];
    if (Number.isFinite(x) && x < lo) lo = x;
    if (Number.isFinite(y) && y > hi) hi = y;
  }
}
if (lo <= hi) {
  const pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.01 || 1;
  yr.start = include_zero ? Math.min(0, lo - pad) : lo - pad;
  yr.end = include_zero ? Math.max(0, hi + pad) : hi + pad;
}
"""


def autoscale(
    fig: Any, series: Sequence[tuple[ColumnDataSource, str, str]], include_zero: bool = False
) -> None:
    """Refit `fig`'s y range to the (low, high) columns of `series` in the visible x range."""
    callback = CustomJS(
        args={
            "xr": fig.x_range,
            "yr": fig.y_range,
            "series": [list(s) for s in series],
            "include_zero": include_zero,
        },
        code=_AUTOSCALE_JS,
    )
    fig.x_range.js_on_change("start", callback)
    fig.x_range.js_on_change("end", callback)


def fit_y(
    y_range: Any, lows: Sequence[Any], highs: Sequence[Any], include_zero: bool = False
) -> None:
    """Server side of `autoscale`: fit the y range to whole columns (initial data)."""
    lo_parts = [np.asarray(v, dtype=float) for v in lows if len(v)]
    hi_parts = [np.asarray(v, dtype=float) for v in highs if len(v)]
    if not lo_parts or not hi_parts:
        return
    lo_all, hi_all = np.concatenate(lo_parts), np.concatenate(hi_parts)
    lo_all, hi_all = lo_all[np.isfinite(lo_all)], hi_all[np.isfinite(hi_all)]
    if not len(lo_all) or not len(hi_all):
        return
    lo, hi = float(lo_all.min()), float(hi_all.max())
    pad = (hi - lo) * 0.06 or abs(hi) * 0.01 or 1.0
    start, end = lo - pad, hi + pad
    if include_zero:
        start, end = min(0.0, start), max(0.0, end)
    y_range.start, y_range.end = start, end
    y_range.reset_start, y_range.reset_end = start, end


# -- downsampling ---------------------------------------------------------------------
def downsample(df: pd.DataFrame, column: str, max_points: int = MAX_POINTS) -> pd.DataFrame:
    """At most ~`max_points` rows: per bucket its first, last, min and max of `column`."""
    n = len(df)
    if n <= max_points:
        return df.reset_index(drop=True)
    buckets = max(1, max_points // 4)
    k = int(np.ceil(n / buckets))
    values = pd.to_numeric(df[column], errors="coerce").to_numpy(dtype=float)
    starts = np.arange(0, n, k)
    safe = np.where(np.isfinite(values), values, np.nanmean(values) if n else 0.0)
    padded = np.full(len(starts) * k, np.nan)
    padded[:n] = safe
    grid = padded.reshape(len(starts), k)
    with np.errstate(invalid="ignore"):
        arg_min = np.nanargmin(grid, axis=1) + starts
        arg_max = np.nanargmax(grid, axis=1) + starts
    ends = np.minimum(starts + k - 1, n - 1)
    keep = np.unique(np.concatenate([starts, ends, arg_min, arg_max]))
    return df.iloc[keep].reset_index(drop=True)


def to_ms(times: Any) -> npt.NDArray[np.float64]:
    """Naive-UTC datetimes as Bokeh's epoch milliseconds."""
    values = pd.to_datetime(pd.Series(times), utc=True).dt.tz_localize(None)
    return values.to_numpy(dtype="datetime64[ns]").astype("int64") / 1e6


class CurveCharts:
    """Equity (with an optional buy & hold line) above its drawdown, on one shared x range."""

    def __init__(
        self, curve: pd.DataFrame, x_range: Any = None, title: str = "Equity", height: int = 260
    ) -> None:
        self.equity = chart(title, height=height, y_kind="money", y_label="equity", x_range=x_range)
        self.drawdown = chart(
            "Drawdown", height=150, y_kind="pct", y_label="drawdown", x_range=self.equity.x_range
        )
        self.src = ColumnDataSource(curve_data(curve))
        line = self.equity.line(
            "time", "equity", source=self.src, color="#1f77b4", line_width=2, legend_label="equity"
        )
        self.series: list[tuple[ColumnDataSource, str, str]] = [(self.src, "equity", "equity")]
        self.drawdown.varea("time", 0, "dd", source=self.src, color="#d62728", alpha=0.35)
        hover(
            self.equity,
            [("time", TIME_HOVER), ("equity", "@equity{0,0.00}"), ("drawdown", "@dd{0.00%}")],
            renderers=[line],
            mode="vline",
        )

    def add_line(self, data: pd.DataFrame, column: str, label: str, color: str) -> None:
        src = ColumnDataSource({"time": to_ms(data["time"]), column: data[column].to_numpy()})
        self.equity.line(
            "time", column, source=src, color=color, line_dash="dashed", legend_label=label
        )
        self.series.append((src, column, column))

    def finish(self) -> None:
        """Fit both y axes and keep them fitted to the visible time range."""
        legend_outside(self.equity)
        fit_y(
            self.equity.y_range,
            [s.data[lo] for s, lo, _ in self.series],
            [s.data[hi] for s, _, hi in self.series],
        )
        fit_y(self.drawdown.y_range, [self.src.data["dd"]], [self.src.data["dd"]], True)
        autoscale(self.equity, self.series)
        autoscale(self.drawdown, [(self.src, "dd", "dd")], include_zero=True)

    def refit(self) -> None:
        fit_y(
            self.equity.y_range,
            [s.data[lo] for s, lo, _ in self.series],
            [s.data[hi] for s, _, hi in self.series],
        )
        fit_y(self.drawdown.y_range, [self.src.data["dd"]], [self.src.data["dd"]], True)


def curve_data(curve: pd.DataFrame) -> dict[str, Any]:
    """Bokeh columns of an account curve; drawdown negative so the area hangs below 0."""
    if not len(curve):
        return {"time": [], "equity": [], "dd": []}
    return {
        "time": to_ms(curve["time"]),
        "equity": pd.to_numeric(curve["equity"], errors="coerce").to_numpy(dtype=float),
        "dd": -pd.to_numeric(curve["drawdown"], errors="coerce").to_numpy(dtype=float),
    }


PERIODS = (("D", "day", 86_400_000), ("W-MON", "week", 7 * 86_400_000),
           ("MS", "month", 30 * 86_400_000))  # fmt: skip
MAX_BARS = 400


def daily_data(daily: pd.DataFrame) -> dict[str, Any]:
    """Bokeh columns of realised PnL per day (`daily`: day, pnl, trades); a long session's
    days are summed per week, or per month, so there are never more than MAX_BARS bars."""
    if not len(daily):
        return {"time": [], "pnl": [], "trades": [], "color": [], "w": [], "period": []}
    frame = daily.assign(day=pd.to_datetime(daily["day"])).set_index("day")[["pnl", "trades"]]
    bars, name, width = frame, "day", float(PERIODS[0][2])
    for rule, label, span in PERIODS[1:]:
        if len(bars) <= MAX_BARS:
            break
        bars = frame.resample(rule, label="left", closed="left").sum()
        name, width = label, float(span)
    pnl = bars["pnl"].to_numpy(dtype=float)
    return {
        "time": to_ms(bars.index.to_series()) + width / 2,
        "pnl": pnl,
        "trades": bars["trades"].to_numpy(),
        "color": np.where(pnl >= 0, UP, DOWN),
        "w": np.full(len(pnl), width * 0.8),
        "period": [name] * len(pnl),
    }


def daily_bars(daily: pd.DataFrame, x_range: Any = None, title: str = "Daily PnL") -> Any:
    """Realised PnL per UTC day as green and red bars (source: fig.renderers[0])."""
    fig = chart(title, height=180, y_kind="money", y_label="PnL", x_range=x_range)
    src = ColumnDataSource(daily_data(daily))
    bars = fig.vbar("time", "w", "pnl", 0, source=src, color="color")
    fig.add_tools(
        HoverTool(
            renderers=[bars],
            tooltips=[("@period of", "@time{%F}"), ("PnL", "@pnl{+0,0.00}"), ("trades", "@trades")],
            formatters={"@time": "datetime"},
        )
    )
    fit_y(fig.y_range, [src.data["pnl"]], [src.data["pnl"]], include_zero=True)
    return fig
