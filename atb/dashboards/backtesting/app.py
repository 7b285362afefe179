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
from loguru import logger

from atb.dashboards import charts
from atb.dashboards import widgets as w
from atb.dashboards.backtesting import figures as f
from atb.dashboards.backtesting import model as m
from atb.dashboards.guard import in_document
from atb.dashboards.page import open_page
from atb.dashboards.settings import DashboardSettings

RUN_CMD = "python -m atb mode=backtest strategy=sma_crossover"
SWEEP_CMD = "python -m atb -m mode=backtest strategy=sma_crossover strategy.fast=5,10,20"

RUN_COLS: list[w.Column] = [
    ("started_at", "Started", "time"),
    ("strategy", "Strategy", "text"),
    ("symbol", "Symbol", "text"),
    ("period", "Period", "text"),
    ("vary", "Parameters (varying)", "text"),
    ("total_return", "Return", "pct"),
    ("buy_and_hold_return", "Buy & hold", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("max_drawdown", "Max DD", "pct"),
    ("profit_factor", "Profit factor", "num"),
    ("num_trades", "Trades", "int"),
    ("status", "Status", "text"),
    ("id", "Run id", "text"),
]
TRADE_COLS: list[w.Column] = [
    ("trade_no", "#", "int"),
    ("side", "Side", "text"),
    ("qty", "Qty", "qty"),
    ("entry_time", "Entry (bar time, UTC)", "time"),
    ("entry_price", "Entry", "money"),
    ("exit_time", "Exit (bar time, UTC)", "time"),
    ("exit_price", "Exit", "money"),
    ("fees", "Fees", "money"),
    ("pnl", "PnL", "money"),
    ("return_pct", "Return", "pct"),
    ("exit_reason", "Reason", "text"),
]
COMPARE_COLS: list[w.Column] = [
    ("label", "Run", "text"),
    ("total_return", "Return", "pct"),
    ("buy_and_hold_return", "Buy & hold", "pct"),
    ("sharpe", "Sharpe", "num"),
    ("max_drawdown", "Max DD", "pct"),
    ("win_rate", "Win rate", "pct"),
    ("num_trades", "Trades", "int"),
    ("profit_factor", "Profit factor", "num"),
    ("fees_paid", "Fees", "money"),
]


def run_kpis(
    row: Mapping[Hashable, Any], n_runs: int, exposure: float | None = None
) -> list[w.Kpi]:
    def val(key: str) -> float | None:
        v = row.get(key)
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)

    trades = val("num_trades")
    ret, hold = val("total_return"), val("buy_and_hold_return")
    edge = None if ret is None or hold is None else ret - hold
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
        ("buy_and_hold", "Buy & hold", w.fmt_pct(hold, signed=True), ""),
        ("vs_hold", "vs buy & hold", w.fmt_pct(edge, signed=True), w.tone(edge)),
        ("profit_factor", "Profit factor", w.fmt_num(val("profit_factor")), ""),
        ("fees", "Fees paid", w.fmt_money(val("fees_paid")), ""),
        ("exposure", "Time in market", w.fmt_pct(exposure), ""),
    ]


class BacktestingApp:
    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.engine: Any = None
        self.registry = pd.DataFrame()
        self.seen: tuple[Any, ...] | None = None
        self.callback: Any = None
        self.run_src = ColumnDataSource(w.empty_frame(RUN_COLS))
        self.trade_src = ColumnDataSource(w.empty_frame(TRADE_COLS))
        self.kpis = w.html_pane(w.kpi_html(run_kpis({}, 0)))
        self.detail = pn.Column(sizing_mode="stretch_width")
        self.strategy = pn.widgets.Select(label="Strategy", options=[""], width=160)
        self.symbol = pn.widgets.Select(label="Symbol", options=[""], width=120)
        self.status = pn.widgets.Select(
            label="Status", options=["", "finished", "failed", "running"], width=110
        )
        self.sort = pn.widgets.Select(label="Sort by", options=list(m.SORTS), width=170)
        # Applies on Enter (and on leaving the box), not on every keystroke.
        self.text = pn.widgets.TextInput(
            label="Search (id, parameters)", width=220, placeholder="e.g. fast=10, then Enter"
        )
        self.notice = w.html_pane("")
        self.run = pn.widgets.Select(label="Run", options={}, width=520)

    def view(self) -> pn.viewable.Viewable:
        opened = open_page(
            "atb · backtesting",
            self.settings.db_url,
            "runs",
            missing_hint="Run a backtest first; results are recorded in the run database.",
            empty=("The database has no run records yet.", "Run a backtest:"),
            command=RUN_CMD,
            extra=self._csv_only,
        )
        if opened.empty is not None:
            return opened.empty
        self.engine, header = opened.engine, opened.header
        # First paint is the header and the KPIs of the newest run: one indexed query,
        # three small Bokeh models. Filters, the registry table, the run detail and the
        # tabs (most of the models, and the only DataTable) are built once it is on screen.
        with self.engine.connect() as conn:
            self.registry = self._query(conn)
            self.seen = m.latest_change(conn)
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
        self._set_options(opts)
        # Watchers run under the document lock (guard.in_document): a search used to raise
        # "_pending_writes should be non-None" and never filter.
        refresh = in_document(self.refresh, self.notice, "filtering the runs")
        for widget in (self.strategy, self.symbol, self.status, self.sort):
            widget.param.watch(refresh, "value")
        self.text.param.watch(refresh, "enter_pressed")
        self.run.param.watch(in_document(self.show_run, self.notice, "showing the run"), "value")
        self.run_src.selected.on_change("indices", self._on_pick)  # Bokeh holds the lock
        runs_tab = pn.Column(
            pn.Row(self.strategy, self.symbol, self.status, self.sort, self.text),
            pn.pane.Bokeh(
                w.data_table(self.run_src, RUN_COLS, height=230, sortable=False),
                sizing_mode="stretch_width",
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
        interval_ms = max(250, int(self.settings.update_interval * 1000))
        self.callback = pn.state.add_periodic_callback(self.poll, period=interval_ms)

    def _set_options(self, opts: dict[str, list[str]]) -> None:
        self.strategy.options = ["", *opts["strategy"]]
        self.symbol.options = ["", *opts["symbol"]]
        self.sweeps = opts["sweep_id"]

    def poll(self) -> None:
        """New, finished or failed runs appear without a reload (one aggregate query)."""
        try:
            with self.engine.connect() as conn:
                now = m.latest_change(conn)
                if now == self.seen:
                    return
                self.seen = now
                self._set_options(m.registry_options(conn))
                self.registry = self._query(conn)
        except Exception as exc:  # a DB hiccup must not kill the session's callback
            logger.warning("backtesting: run registry not refreshed: {}", exc)
            return
        self._apply_registry(keep_detail=True)

    # -- registry / run detail ---------------------------------------------------------
    def _query(self, conn: Any) -> pd.DataFrame:
        df = m.run_registry(
            conn,
            strategy=self.strategy.value or None,
            symbol=self.symbol.value or None,
            status=self.status.value or None,
            # what the box shows: value_input is current on Enter, value only after blur
            text=(self.text.value_input if self.text.value_input is not None else self.text.value)
            or "",
        )
        return m.sort_runs(df, self.sort.value)

    def refresh(self) -> None:
        with self.engine.connect() as conn:
            self.registry = self._query(conn)
        self._apply_registry()

    def _apply_registry(self, keep_detail: bool = False) -> None:
        self.run_src.data = w.frame_data(self.registry, RUN_COLS)
        options = {
            f"{r.started_at:%Y-%m-%d %H:%M} · {r.strategy} · {r.vary} · {r.status} · "
            f"{str(r.id)[:8]}": r.id
            for r in self.registry.itertuples()
        }
        shown = self.run.value
        self.run.options = options
        # dicts compare equal in any order: a re-sort alone would not reach the browser
        self.run.param.trigger("options")
        if options:
            if self.run.value not in options.values():
                self.run.value = next(iter(options.values()))
            elif not keep_detail or shown != self.run.value:
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
        with self.engine.connect() as conn:
            curve = m.equity_curve(conn, run_id)
            trades = m.run_trades(conn, run_id)
            run = m.get_run_row(conn, run_id) or {}
            exposure = m.exposure_share(conn, run_id)
            why = m.no_trade_reasons(conn, run_id) if not len(trades) else None
        self.kpis.object = w.kpi_html(run_kpis(row, len(self.registry), exposure))
        self.trade_src.data = w.frame_data(trades, TRADE_COLS)
        if not len(curve):
            reason = str(run.get("error") or "")[:300] if run.get("status") == "failed" else ""
            self.detail.objects = [
                w.html_pane(
                    w.empty_state(
                        "This run recorded no account history."
                        + (f" It failed: {reason}" if reason else ""),
                        "Backtests write it when db logging is on (the default).",
                        RUN_CMD,
                    )
                )
            ]
            return
        layout, self.price = f.run_charts(
            curve, m.candles_for(run), trades, f"{run.get('symbol')} {run.get('timeframe')}"
        )
        parts: list[Any] = []
        if not len(trades):
            parts.append(w.html_pane(f.no_trades_html(why)))
        parts += [
            pn.pane.Bokeh(layout, sizing_mode="stretch_width"),
            w.section(f"Trades ({len(trades):,})"),
            pn.pane.Bokeh(
                w.data_table(self.trade_src, TRADE_COLS, height=240), sizing_mode="stretch_width"
            ),
        ]
        self.detail.objects = parts

    # -- comparison --------------------------------------------------------------------
    def compare_view(self) -> pn.viewable.Viewable:
        options = {
            f"{r.strategy} · {r.vary} · {r.status} · {str(r.id)[:8]}": r.id
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
        # Only the parameters that differ between the compared runs; the id tells
        # identical parameters apart.
        vary = m.vary_labels(table)
        labels = {rid: f"{v} · {str(rid)[:6]}" for rid, v in zip(table["id"], vary, strict=True)}
        table = table.assign(label=[labels[i] for i in table["id"]])
        src = ColumnDataSource(w.frame_data(table, COMPARE_COLS))
        return pn.Column(
            w.html_pane('<div id="compare-view"></div>'),
            pn.pane.Bokeh(
                w.data_table(src, COMPARE_COLS, height=40 + 28 * len(table)),
                sizing_mode="stretch_width",
            ),
            pn.pane.Bokeh(f.compare_figure(curves, labels), sizing_mode="stretch_width"),
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
        kind = f.metric_format(metric)[0]
        cols += [(metric, metric, kind if kind in ("pct", "int") else "num")]
        cols += [("status", "Status", "text")]
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
            pn.pane.Bokeh(f.sweep_figure(jobs, params, metric), sizing_mode="stretch_width"),
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
        fig = charts.chart("Cumulative PnL", height=240, y_kind="money", y_label="PnL")
        if len(trades):
            cum = trades["cum_pnl"].to_numpy(dtype=float)
            src = ColumnDataSource({"time": charts.to_ms(trades["exit_time"]), "cum": cum})
            fig.step("time", "cum", source=src, mode="after", line_width=2)
            charts.fit_y(fig.y_range, [cum], [cum], include_zero=True)
        src = ColumnDataSource(w.frame_data(trades, TRADE_COLS))
        return pn.Column(
            pn.pane.Bokeh(fig, sizing_mode="stretch_width"),
            pn.pane.Bokeh(w.data_table(src, TRADE_COLS, height=260), sizing_mode="stretch_width"),
            sizing_mode="stretch_width",
        )


def create_app(settings: DashboardSettings | None = None) -> pn.viewable.Viewable:
    return BacktestingApp(settings or DashboardSettings()).view()
