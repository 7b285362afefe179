"""The monitoring page's charts for one session, kept current as the session runs.

Candles of the session's symbol (from the file a replay session serves; live feeds keep
no candles, so there the chart shows the trades alone) with entries/exits coloured by
PnL and the open position's entry, stop-loss and take-profit lines; equity and drawdown
below on the same time axis; realised PnL per day. The curve is the whole session
min/max-downsampled; new rows stream in and the curve is downsampled again once it has
doubled, so a session open for weeks is neither truncated nor slow.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
from bokeh.layouts import column

from atb.dashboards import charts
from atb.dashboards.bars import candles_for
from atb.dashboards.candles import Candles, PriceChart
from atb.dashboards.monitoring.history import add_daily
from atb.dashboards.monitoring.model import MonitoringModel
from atb.dashboards.tables import utc

MARKED_TRADES = 3000
"""Trades marked on the price chart: the newest ones (the table and KPIs count them all)."""


class SessionCharts:
    def __init__(self, model: MonitoringModel) -> None:
        self.model = model
        views = model.views()
        self.curve = model.account_frame(views.curve)
        self.daily_df = views.daily
        self.trades = model.recent_trades(MARKED_TRADES)
        self.bars_until: Any = None
        run = model.run
        symbol = f"{run.get('symbol')} {run.get('timeframe')}"
        self.price = PriceChart(
            self._candles(),
            self.trades,
            title=f"{symbol} · candles, trades (newest {MARKED_TRADES:,}), open position",
        )
        if self.price.candles is None:
            self.price.fig.title.text = f"{symbol} · trades (no candle file for this session)"
        self.curves = charts.CurveCharts(
            self.curve, x_range=self.price.fig.x_range, title="Equity (whole session)"
        )
        self.curves.finish()
        self.daily = charts.daily_bars(
            self.daily_df, title="Realised PnL per day, week or month (bar time)"
        )
        self.layout = column(
            self.price.fig,
            self.curves.equity,
            self.curves.drawdown,
            self.daily,
            sizing_mode="stretch_width",
        )

    def _candles(self) -> Candles | None:
        """The replayed candles from the session's first snapshot to its latest bar."""
        if not len(self.curve):
            return None
        first, last = utc(self.curve["time"].iloc[0]), utc(self.curve["time"].iloc[-1])
        if first is None or last is None:
            return None
        bars = candles_for(self.model.run, start=first - timedelta(hours=1), end=last)
        self.bars_until = last
        return Candles(bars) if bars is not None and len(bars) else None

    def set_positions(self, positions: pd.DataFrame) -> None:
        levels: list[tuple[str, float, str]] = []
        for row in positions.itertuples():
            side = str(row.side)
            for label, value, color in (
                (f"{side} entry", row.entry_price, "#1f77b4"),
                ("stop-loss", row.stop_loss, charts.DOWN),
                ("take-profit", row.take_profit, charts.UP),
            ):
                price = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
                if pd.notna(price):
                    levels.append((label, float(price), color))
        self.price.set_levels(levels)

    def stream(self, account: pd.DataFrame, new_trades: pd.DataFrame) -> None:
        """Append a poll's new account rows and trades."""
        if len(account):
            self.curve = pd.concat([self.curve, account], ignore_index=True)
            if len(self.curve) > 2 * charts.MAX_POINTS:
                self.curve = charts.downsample(self.curve, "equity")
                self.curves.src.data = charts.curve_data(self.curve)
            else:
                self.curves.src.stream(charts.curve_data(account))
            self.curves.refit()
            if self.price.candle_src is not None and self.bars_until is not None:
                self.price.set_candles(self._candles())
        if len(new_trades):
            self.trades = pd.concat([self.trades, new_trades], ignore_index=True)
            self.trades = self.trades.tail(MARKED_TRADES).reset_index(drop=True)
            self.price.set_trades(self.trades)
            self.daily_df = add_daily(self.daily_df, new_trades)
            daily = charts.daily_data(self.daily_df)
            self.daily.renderers[0].data_source.data = daily
            charts.fit_y(self.daily.y_range, [daily["pnl"]], [daily["pnl"]], include_zero=True)
