"""The backtesting page: filterable run registry; a run's equity, drawdown, price with trade
markers and trade list; a side-by-side comparison; a sweep's jobs by parameter; CSV exports.

First paint is the header and the newest run's KPIs only; the filters, registry table, run
detail and tabs are built once that is on screen, and the Compare/Sweeps tabs only when
first opened (`dynamic=True`, lazy).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource
from bokeh.palettes import Category10_10

from atb.dashboards import widgets as w
from atb.dashboards.backtesting import model as m
from atb.dashboards.backtesting.figures import equity_figure, price_figure, sweep_figure
from atb.dashboards.guard import in_document
from atb.dashboards.readonly import DatabaseMissing, describe, readonly_engine, table_names
from atb.dashboards.settings import DashboardSettings

RUN_CMD = "python -m atb mode=backtest strategy=sma_crossover"
SWEEP_CMD = "python -m atb -m mode=backtest strategy=sma_crossover strategy.fast=5,10,20"

RUN_COLS: list[w.Column] = [
    ("started_at", "Started", "time"),
    ("strategy", "Strategy", "text"),
    ("symbol", "Symbol", "text"),
    ("period", "Period", "text"),
    ("params", "Parameters", "text"),
    ("total_return", "Return", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("max_drawdown", "Max DD", "pct"),
    ("win_rate", "Win rate", "pct"),
    ("num_trades", "Trades", "int"),
    ("status", "Status", "text"),
    ("id", "Run id", "text"),
]
TRADE_COLS: list[w.Column] = [
    ("trade_no", "#", "int"),
    ("side", "Side", "text"),
    ("qty", "Qty", "num"),
    ("entry_time", "Entry time", "time"),
    ("entry_price", "Entry", "money"),
    ("exit_time", "Exit time", "time"),
    ("exit_price", "Exit", "money"),
    ("pnl", "PnL", "money"),
    ("return_pct", "Return", "pct"),
    ("exit_reason", "Reason", "text"),
]
COMPARE_COLS: list[w.Column] = [
    ("label", "Run", "text"),
    ("params", "Parameters", "text"),
    ("total_return", "Return", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("max_drawdown", "Max DD", "pct"),
    ("win_rate", "Win rate", "pct"),
    ("num_trades", "Trades", "int"),
    ("profit_factor", "Profit factor", "num"),
]


def run_kpis(row: Mapping[Hashable, Any], n_runs: int) -> list[w.Kpi]:
    def val(key: str) -> float | None:
        v = row.get(key)
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)

    trades = val("num_trades")
    return [
        ("runs", "Backtest runs", f"{n_runs:,}", ""),
        (
            "total_return",
            "Return",
            w.fmt_pct(val("total_return"), signed=True),
            w.tone(val("total_return")),
        ),
        ("sharpe", "Sharpe", w.fmt_num(val("sharpe")), ""),
        ("max_drawdown", "Max drawdown", w.fmt_pct(val("max_drawdown")), ""),
        ("win_rate", "Win rate", w.fmt_pct(val("win_rate")), ""),
        ("num_trades", "Trades", "–" if trades is None else f"{trades:,.0f}", ""),
    ]


class BacktestingApp:
    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.engine: Any = None
        self.registry = pd.DataFrame()
        self.run_src = ColumnDataSource(w.empty_frame(RUN_COLS))
        self.trade_src = ColumnDataSource(w.empty_frame(TRADE_COLS))
        self.kpis = w.html_pane(w.kpi_html(run_kpis({}, 0)))
        self.detail = pn.Column(sizing_mode="stretch_width")
        self.strategy = pn.widgets.Select(label="Strategy", options=[""], width=160)
        self.symbol = pn.widgets.Select(label="Symbol", options=[""], width=120)
        self.status = pn.widgets.Select(
            label="Status", options=["", "finished", "failed", "running"], width=110
        )
        # Applies on Enter (and on leaving the box), not on every keystroke.
        self.text = pn.widgets.TextInput(
            label="Search (id, parameters)", width=220, placeholder="e.g. fast=10, then Enter"
        )
        self.notice = w.html_pane("")
        self.run = pn.widgets.Select(label="Run", options={}, width=520)

    def view(self) -> pn.viewable.Viewable:
        header = w.header("atb · backtesting", describe(self.settings.db_url))
        try:
            self.engine = readonly_engine(self.settings.db_url)
        except DatabaseMissing as exc:
            return w.empty_page(
                header,
                str(exc),
                "Run a backtest first; results are recorded in the run database.",
                RUN_CMD,
                *self._csv_only(),
            )
        if "runs" not in table_names(self.engine):
            return w.empty_page(
                header,
                "The database has no run records yet.",
                "Run a backtest:",
                RUN_CMD,
                *self._csv_only(),
            )
        # First paint is the header and the KPIs of the newest run: one indexed query,
        # three small Bokeh models. Filters, the registry table, the run detail and the
        # tabs (most of the models, and the only DataTable) are built once it is on screen.
        with self.engine.connect() as conn:
            self.registry = self._query(conn)
        first = self.registry["id"].iloc[0] if len(self.registry) else None
        self.kpis.object = w.kpi_html(
            run_kpis(m.run_summary(self.registry, first), len(self.registry))
        )
        self.body = pn.Column(sizing_mode="stretch_width")
        w.after_first_paint(self._build_rest)
        return pn.Column(header, self.notice, self.kpis, self.body, sizing_mode="stretch_width")

    def _build_rest(self) -> None:
        with self.engine.connect() as conn:
            opts = m.registry_options(conn)
        self.strategy.options = ["", *opts["strategy"]]
        self.symbol.options = ["", *opts["symbol"]]
        self.sweeps = opts["sweep_id"]
        # Watchers run under the document lock (guard.in_document): a search used to raise
        # "_pending_writes should be non-None" and never filter.
        refresh = in_document(self.refresh, self.notice, "filtering the runs")
        for widget in (self.strategy, self.symbol, self.status, self.text):
            widget.param.watch(refresh, "value")
        self.text.param.watch(refresh, "enter_pressed")
        self.run.param.watch(in_document(self.show_run, self.notice, "showing the run"), "value")
        self.run_src.selected.on_change("indices", self._on_pick)  # Bokeh holds the lock
        runs_tab = pn.Column(
            pn.Row(self.strategy, self.symbol, self.status, self.text),
            pn.pane.Bokeh(
                w.data_table(self.run_src, RUN_COLS, height=230), sizing_mode="stretch_width"
            ),
            self.run,
            self.detail,
            sizing_mode="stretch_width",
            name="Runs",
        )
        # Lazy: a tab's models are built the first time it is opened.
        self.tabs = pn.Tabs(
            runs_tab,
            ("Compare", pn.param.ParamFunction(pn.bind(self.compare_view), lazy=True)),
            ("Sweeps", pn.param.ParamFunction(pn.bind(self.sweep_view), lazy=True)),
            ("CSV exports", pn.Column(*self._csv_only())),
            dynamic=True,
            sizing_mode="stretch_width",
        )
        self._apply_registry()  # the registry read for the first paint, no second query
        self.body.objects = [self.tabs]

    # -- registry / run detail ---------------------------------------------------------
    def _query(self, conn: Any) -> pd.DataFrame:
        return m.run_registry(
            conn,
            strategy=self.strategy.value or None,
            symbol=self.symbol.value or None,
            status=self.status.value or None,
            # what the box shows: value_input is current on Enter, value only after blur
            text=(self.text.value_input if self.text.value_input is not None else self.text.value)
            or "",
        )

    def refresh(self) -> None:
        with self.engine.connect() as conn:
            self.registry = self._query(conn)
        self._apply_registry()

    def _apply_registry(self) -> None:
        self.run_src.data = w.frame_data(self.registry, RUN_COLS)
        options = {
            f"{r.started_at:%Y-%m-%d %H:%M} · {r.strategy} · {r.params} · {str(r.id)[:12]}": r.id
            for r in self.registry.itertuples()
        }
        self.run.options = options
        if options:
            if self.run.value not in options.values():
                self.run.value = next(iter(options.values()))
            else:
                self.show_run()
        else:
            self.run.value = None
            self.detail.objects = [
                w.html_pane(
                    w.empty_state(
                        "No backtest runs match.", "Clear the filters, or record one:", RUN_CMD
                    )
                )
            ]
            self.kpis.object = w.kpi_html(run_kpis({}, 0))

    def _on_pick(self, _attr: str, _old: Any, new: list[int]) -> None:
        if new and new[0] < len(self.registry):
            self.run.value = self.registry.iloc[new[0]]["id"]

    def show_run(self) -> None:
        run_id = self.run.value
        if not run_id:
            return
        row = m.run_summary(self.registry, run_id)
        self.kpis.object = w.kpi_html(run_kpis(row, len(self.registry)))
        with self.engine.connect() as conn:
            curve = m.equity_curve(conn, run_id)
            trades = m.run_trades(conn, run_id)
            run = m.get_run_row(conn, run_id) or {}
        self.trade_src.data = w.frame_data(trades, TRADE_COLS)
        if not len(curve):
            self.detail.objects = [
                w.html_pane(
                    w.empty_state(
                        "This run recorded no account history.",
                        "Backtests write it when db logging is on (the default).",
                        RUN_CMD,
                    )
                )
            ]
            return
        self.detail.objects = [
            pn.pane.Bokeh(equity_figure(curve), sizing_mode="stretch_width"),
            pn.pane.Bokeh(price_figure(m.candles_for(run), trades), sizing_mode="stretch_width"),
            w.section(f"Trades ({len(trades):,})"),
            pn.pane.Bokeh(
                w.data_table(self.trade_src, TRADE_COLS, height=240), sizing_mode="stretch_width"
            ),
        ]

    # -- comparison --------------------------------------------------------------------
    def compare_view(self) -> pn.viewable.Viewable:
        options = {
            f"{r.strategy} · {r.params} · {str(r.id)[:12]}": r.id
            for r in self.registry.itertuples()
        }
        picker = pn.widgets.MultiSelect(
            label="Runs to compare (Ctrl-click)",
            options=options,
            value=list(options.values())[:2],
            size=6,
            width=560,
        )
        return pn.Column(picker, pn.bind(self._comparison, picker), sizing_mode="stretch_width")

    def _comparison(self, run_ids: list[str]) -> pn.viewable.Viewable:
        if len(run_ids) < 2:
            return w.html_pane(
                w.empty_state(
                    "Pick two or more runs to compare.",
                    "A sweep gives you comparable runs:",
                    SWEEP_CMD,
                )
            )
        table, curves = m.compare(self.engine, run_ids)
        # Parameters tell sweep jobs apart; the id tail tells identical parameters apart.
        labels = {
            r.id: f"{r.params or r.strategy!s} · …{str(r.id)[-6:]}" for r in table.itertuples()
        }
        table = table.assign(label=[labels[i] for i in table["id"]])
        fig = w.time_figure("Equity (return since start)", height=300, y_label="return")
        for i, (rid, curve) in enumerate(curves.items()):
            if len(curve):
                src = ColumnDataSource(curve[["time", "return"]])
                fig.line(
                    "time",
                    "return",
                    source=src,
                    legend_label=labels.get(rid, str(rid)),
                    color=Category10_10[i % 10],
                    line_width=2,
                )
        fig.legend.location = "top_left"
        fig.legend.click_policy = "hide"
        w.add_hover(
            fig, [("time", "@time{%F %H:%M}"), ("return", "@return{0.00%}")], datetime_field="time"
        )
        src = ColumnDataSource(w.frame_data(table, COMPARE_COLS))
        return pn.Column(
            w.html_pane('<div id="compare-view"></div>'),
            pn.pane.Bokeh(
                w.data_table(src, COMPARE_COLS, height=40 + 28 * len(table)),
                sizing_mode="stretch_width",
            ),
            pn.pane.Bokeh(fig, sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )

    # -- sweeps -----------------------------------------------------------------------
    def sweep_view(self) -> pn.viewable.Viewable:
        if not self.sweeps:
            return w.html_pane(
                w.empty_state("No sweeps recorded.", "Run a multirun sweep:", SWEEP_CMD)
            )
        sweep = pn.widgets.Select(label="Sweep", options=self.sweeps, width=420)
        metric = pn.widgets.Select(
            label="Metric", options=list(m.METRICS), value="sharpe", width=160
        )
        return pn.Column(
            pn.Row(sweep, metric), pn.bind(self._sweep, sweep, metric), sizing_mode="stretch_width"
        )

    def _sweep(self, sweep_id: str, metric: str) -> pn.viewable.Viewable:
        with self.engine.connect() as conn:
            jobs, params = m.sweep_table(conn, sweep_id)
        cols: list[w.Column] = [("job_num", "Job", "int")]
        cols += [(f"param.{p}", p, "text") for p in params]
        cols += [(metric, metric, "num"), ("status", "Status", "text")]
        shown = jobs.copy()
        for p in params:
            shown[f"param.{p}"] = shown[f"param.{p}"].astype(str)
        table = pn.pane.Bokeh(
            w.data_table(
                ColumnDataSource(w.frame_data(shown, cols)),
                cols,
                height=40 + 28 * min(len(jobs), 12),
            ),
            sizing_mode="stretch_width",
        )
        return pn.Column(
            pn.pane.Bokeh(sweep_figure(jobs, params, metric), sizing_mode="stretch_width"),
            table,
            sizing_mode="stretch_width",
        )

    # -- CSV exports ------------------------------------------------------------------
    def _csv_only(self) -> list[Any]:
        logs_dir = self.settings.logs_dir
        files = m.list_csv_exports(logs_dir)
        if not files:
            where = f"in {logs_dir}" if logs_dir else "(no --logs-dir given)"
            return [
                w.html_pane(
                    w.empty_state(
                        f"No CSV trade exports {where}.",
                        "Export a backtest's trades, then pass the directory with --logs-dir:",
                        "python -m atb backtest.export_csv=logs/trades.csv",
                    )
                )
            ]
        base = Path(logs_dir) if logs_dir else Path()
        picker = pn.widgets.Select(
            label="Export", width=520, options={str(p.relative_to(base)): str(p) for p in files}
        )
        return [picker, pn.bind(self._csv, picker)]

    def _csv(self, path: str) -> pn.viewable.Viewable:
        try:
            trades = m.read_trade_csv(Path(path))
        except Exception as exc:
            return w.html_pane(w.empty_state(f"Cannot read {Path(path).name}", str(exc)[:300]))
        fig = w.time_figure("Cumulative PnL", height=240)
        if len(trades):
            src = ColumnDataSource(trades[["exit_time", "cum_pnl"]])
            fig.step("exit_time", "cum_pnl", source=src, mode="after", line_width=2)
        src = ColumnDataSource(w.frame_data(trades, TRADE_COLS))
        return pn.Column(
            pn.pane.Bokeh(fig, sizing_mode="stretch_width"),
            pn.pane.Bokeh(w.data_table(src, TRADE_COLS, height=260), sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )


def create_app(settings: DashboardSettings | None = None) -> pn.viewable.Viewable:
    return BacktestingApp(settings or DashboardSettings()).view()
