"""Candlesticks with trades for one symbol (shared by the monitoring and backtesting pages).

Candles are aggregated to at most `MAX_CANDLES` per view; zooming re-aggregates the visible
range at a finer resolution on the server (one `RangesUpdate` per gesture, numpy `reduceat`
over the in-memory bars, so a 1M-bar run stays interactive). Trades are drawn as an entry
marker (▲ long, ▼ short), an exit ring and the line between them, all coloured by the
trade's PnL; past `MAX_MARKERS` only the visible range's trades are sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from bokeh.events import RangesUpdate
from bokeh.models import ColumnDataSource, HoverTool
from bokeh.models.annotations import Label, Span

from atb.dashboards.charts import (
    DOWN,
    FLAT,
    TIME_HOVER,
    UP,
    autoscale,
    chart,
    fit_y,
    hover,
    legend_outside,
    to_ms,
)

MAX_CANDLES = 600
MAX_MARKERS = 500
MARK_COLUMNS = (
    "time",
    "price",
    "exit_time",
    "exit_price",
    "pnl",
    "ret",
    "side",
    "no",
    "color",
    "marker",
    "reason",
    "qty",
)


CANDLE_COLUMNS = ("time", "open", "high", "low", "close", "top", "bottom", "w", "color")


def empty_candles() -> dict[str, Any]:
    return {k: [] for k in CANDLE_COLUMNS}


class Candles:
    """OHLC bars held in memory; served to the browser at the visible range's resolution."""

    def __init__(self, bars: pd.DataFrame) -> None:
        self.t = to_ms(bars["time"])
        self.o = bars["open"].to_numpy(dtype=float)
        self.h = bars["high"].to_numpy(dtype=float)
        self.l = bars["low"].to_numpy(dtype=float)
        self.c = bars["close"].to_numpy(dtype=float)
        diffs = np.diff(self.t)
        self.bar_ms = float(np.median(diffs)) if len(diffs) else 3_600_000.0

    def __len__(self) -> int:
        return len(self.t)

    @property
    def span(self) -> tuple[float, float] | None:
        return (float(self.t[0]), float(self.t[-1] + self.bar_ms)) if len(self.t) else None

    def window(self, start: float | None = None, end: float | None = None) -> dict[str, Any]:
        """Candles within [start, end] (ms), aggregated to at most MAX_CANDLES."""
        i0 = 0 if start is None else int(np.searchsorted(self.t, start, side="left"))
        i1 = len(self.t) if end is None else int(np.searchsorted(self.t, end, side="right"))
        # one bucket of margin each side, so a pan shows candles before the refresh lands
        span = i1 - i0
        i0, i1 = max(0, i0 - span // 4), min(len(self.t), i1 + span // 4)
        n = i1 - i0
        if n <= 0:
            return empty_candles()
        k = max(1, int(np.ceil(n / MAX_CANDLES)))
        idx = np.arange(i0, i1, k)
        last = np.minimum(idx + k - 1, i1 - 1)
        rel = idx - i0
        o, c = self.o[idx], self.c[last]
        h = np.maximum.reduceat(self.h[i0:i1], rel)
        lo = np.minimum.reduceat(self.l[i0:i1], rel)
        width = self.bar_ms * k
        return {
            "time": self.t[idx] + width / 2,
            "open": o,
            "high": h,
            "low": lo,
            "close": c,
            "top": np.maximum(o, c),
            "bottom": np.minimum(o, c),
            "w": np.full(len(idx), width * 0.7),
            "color": np.where(c >= o, UP, DOWN),
        }


def _numbers(trades: pd.DataFrame, name: str) -> Any:
    if name not in trades:
        return np.full(len(trades), np.nan)
    return pd.to_numeric(trades[name], errors="coerce").to_numpy(dtype=float)


def trade_marks(trades: pd.DataFrame) -> dict[str, Any]:
    """Entry/exit markers and the line between them, coloured by the trade's PnL."""
    if not len(trades):
        return {k: [] for k in MARK_COLUMNS}
    pnl = np.nan_to_num(_numbers(trades, "pnl"))
    side = trades["side"].astype(str).to_numpy()
    reason = trades["exit_reason"] if "exit_reason" in trades else pd.Series([""] * len(trades))
    return {
        "time": to_ms(trades["entry_time"]),
        "price": _numbers(trades, "entry_price"),
        "exit_time": to_ms(trades["exit_time"]),
        "exit_price": _numbers(trades, "exit_price"),
        "pnl": pnl,
        "ret": _numbers(trades, "return_pct"),
        "side": side,
        "no": _numbers(trades, "trade_no") if "trade_no" in trades else np.arange(1, len(pnl) + 1),
        "color": np.where(pnl > 0, UP, np.where(pnl < 0, DOWN, FLAT)),
        "marker": np.where(side == "short", "inverted_triangle", "triangle"),
        "reason": reason.fillna("").astype(str).to_numpy(),
        "qty": _numbers(trades, "qty"),
    }


def visible_marks(marks: dict[str, Any], start: float | None, end: float | None) -> dict[str, Any]:
    """Trades overlapping [start, end], at most MAX_MARKERS (evenly spread)."""
    n = len(marks["time"])
    if not n:
        return marks
    t0, t1 = np.asarray(marks["time"]), np.asarray(marks["exit_time"])
    keep = np.ones(n, dtype=bool)
    if start is not None:
        keep &= t1 >= start
    if end is not None:
        keep &= t0 <= end
    idx = np.flatnonzero(keep)
    if len(idx) > MAX_MARKERS:
        idx = idx[np.linspace(0, len(idx) - 1, MAX_MARKERS).astype(int)]
    return {k: np.asarray(v)[idx] for k, v in marks.items()}


class PriceChart:
    """Candles, trades and stop-loss / take-profit lines for one symbol.

    `x_range` is shared with the equity and drawdown charts built by `curve_charts`.
    """

    def __init__(
        self,
        candles: Candles | None,
        trades: pd.DataFrame,
        title: str = "Price",
        height: int = 340,
        x_range: Any = None,
    ) -> None:
        self.candles = candles
        self.marks = trade_marks(trades)
        self.fig = chart(title, height=height, y_kind="price", y_label="price", x_range=x_range)
        self.candle_src = ColumnDataSource(
            candles.window() if candles is not None else empty_candles()
        )
        self.trade_src = ColumnDataSource(visible_marks(self.marks, None, None))
        fig = self.fig
        fig.segment("time", "high", "time", "low", source=self.candle_src, color="color")
        bodies = fig.vbar(
            "time",
            "w",
            "top",
            "bottom",
            source=self.candle_src,
            fill_color="color",
            line_color="color",
        )
        fig.segment(
            "time",
            "price",
            "exit_time",
            "exit_price",
            source=self.trade_src,
            color="color",
            line_width=1.5,
            line_alpha=0.8,
        )
        entries = fig.scatter(
            "time",
            "price",
            source=self.trade_src,
            marker="marker",
            size=9,
            fill_color="color",
            line_color="#222",
            line_width=0.6,
            legend_label="entry ▲ long ▼ short",
        )
        exits = fig.scatter(
            "exit_time",
            "exit_price",
            source=self.trade_src,
            marker="circle",
            size=7,
            fill_color="white",
            line_color="color",
            line_width=2,
            legend_label="exit (green win, red loss)",
        )
        legend_outside(fig)
        hover(
            fig,
            [
                ("time", TIME_HOVER),
                ("open", "@open{0,0.00}"),
                ("high", "@high{0,0.00}"),
                ("low", "@low{0,0.00}"),
                ("close", "@close{0,0.00}"),
            ],
            renderers=[bodies],
            mode="vline",
        )
        fig.add_tools(
            HoverTool(
                renderers=[entries, exits],
                tooltips=[
                    ("trade", "#@no @side"),
                    ("entry", "@time{%F %H:%M} @ @price{0,0.00}"),
                    ("exit", "@exit_time{%F %H:%M} @ @exit_price{0,0.00}"),
                    ("PnL", "@pnl{+0,0.00} (@ret{+0.00%})"),
                    ("exit reason", "@reason"),
                ],
                formatters={"@time": "datetime", "@exit_time": "datetime"},
            )
        )
        self.levels: list[Any] = []
        self.shown_levels: list[tuple[str, float, str]] = []
        self.refit()
        autoscale(
            fig,
            [
                (self.candle_src, "low", "high"),
                (self.trade_src, "price", "price"),
                (self.trade_src, "exit_price", "exit_price"),
            ],
        )
        fig.on_event(RangesUpdate, self._on_range)
        if candles is None:
            fig.title.text += " (no candles: the run's data file is not on this host)"

    def _on_range(self, event: Any) -> None:
        start, end = event.x0, event.x1
        if self.candles is not None and len(self.candles) > MAX_CANDLES:
            self.candle_src.data = self.candles.window(start, end)
        if len(self.marks["time"]) > MAX_MARKERS:
            self.trade_src.data = visible_marks(self.marks, start, end)

    def refit(self) -> None:
        c, t = self.candle_src.data, self.trade_src.data
        fit_y(
            self.fig.y_range,
            [c["low"], t["price"], t["exit_price"]],
            [c["high"], t["price"], t["exit_price"]],
        )

    def set_trades(self, trades: pd.DataFrame) -> None:
        self.marks = trade_marks(trades)
        self.trade_src.data = visible_marks(self.marks, None, None)

    def set_candles(self, candles: Candles | None) -> None:
        self.candles = candles
        self.candle_src.data = candles.window() if candles is not None else empty_candles()
        self.refit()

    def set_levels(self, levels: Sequence[tuple[str, float, str]]) -> None:
        """Horizontal lines (label, price, colour): an open position's entry, SL and TP.
        Called on every poll, so nothing is rebuilt unless the levels changed."""
        wanted = list(levels)
        if wanted == self.shown_levels:
            return
        self.shown_levels = wanted
        old = set(map(id, self.levels))
        self.fig.center = [m for m in self.fig.center if id(m) not in old]
        self.levels = []
        for text, price, color in wanted:
            span = Span(
                location=price, dimension="width", line_color=color, line_dash="dashed",
                line_width=1.5,
            )  # fmt: skip
            label = Label(
                x=5, y=price, x_units="screen", text=f"{text} {price:,.2f}", text_color=color,
                text_font_size="8pt", background_fill_color="white", background_fill_alpha=0.7,
            )  # fmt: skip
            self.levels += [span, label]
        self.fig.center = [*self.fig.center, *self.levels]
        if wanted:
            y = self.fig.y_range
            y.start = min(y.start, *(p for _, p, _ in wanted))
            y.end = max(y.end, *(p for _, p, _ in wanted))
