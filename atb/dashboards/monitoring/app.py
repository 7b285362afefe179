"""The monitoring page: session selector, KPIs, equity chart, positions, trades, events.

A periodic callback (every `update_interval` seconds) asks the view model for rows newer
than the last ids it saw and streams them into the Bokeh sources; nothing is re-queried
wholesale unless the operator switches session or severity filter.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import panel as pn
from bokeh.models import ColumnDataSource
from loguru import logger

from atb.dashboards import widgets as w
from atb.dashboards.guard import in_document
from atb.dashboards.monitoring.events import event_details_html
from atb.dashboards.monitoring.model import (
    HIDDEN_BY_DEFAULT,
    SEVERITIES,
    Kpis,
    MonitoringModel,
    default_session,
    sessions,
)
from atb.dashboards.monitoring.session_charts import SessionCharts
from atb.dashboards.monitoring.status import strip_html
from atb.dashboards.page import open_page
from atb.dashboards.settings import DashboardSettings
from atb.dashboards.tables import MODES, run_label

RECORD_CMD = "python -m atb mode=paper exchange=replay"

TRADE_COLS: list[w.Column] = [
    ("exit_time", "Exit (bar time, UTC)", "time"),
    ("side", "Side", "text"),
    ("qty", "Size", "qty"),
    ("entry_price", "Entry", "money"),
    ("exit_price", "Exit", "money"),
    ("pnl", "PnL", "money"),
    ("return_pct", "Return", "pct"),
    ("exit_reason", "Reason", "text"),
]
POSITION_COLS: list[w.Column] = [
    ("side", "Side", "text"),
    ("qty", "Size", "qty"),
    ("entry_time", "Opened (bar time, UTC)", "time"),
    ("entry_price", "Entry", "money"),
    ("last_price", "Current", "money"),
    ("unrealized_pnl", "Unrealised PnL", "money"),
    ("stop_loss", "Stop-loss", "money"),
    ("take_profit", "Take-profit", "money"),
]
EVENT_COLS: list[w.Column] = [
    ("timestamp", "Logged (wall clock, UTC)", "time"),
    ("severity", "Severity", "text"),
    ("event_type", "Type", "text"),
    ("name", "Event", "text"),
    ("component", "Component", "text"),
    ("details_text", "Details (qty, price, fee, pnl, reason, …)", "text"),
    ("message", "Message", "text"),
]


def kpi_items(k: Kpis) -> list[w.Kpi]:
    return [
        ("balance", "Balance", w.fmt_money(k.balance), ""),
        ("equity", "Equity", w.fmt_money(k.equity), ""),
        ("pnl_today", "PnL today", w.fmt_money(k.pnl_today, signed=True), w.tone(k.pnl_today)),
        ("pnl_total", "PnL total", w.fmt_money(k.pnl_total, signed=True), w.tone(k.pnl_total)),
        ("drawdown", "Drawdown", w.fmt_pct(k.drawdown), "warn" if (k.drawdown or 0) > 0 else ""),
        ("max_drawdown", "Max drawdown", w.fmt_pct(k.max_drawdown), ""),
        ("win_rate", "Win rate", w.fmt_pct(k.win_rate), ""),
        ("sharpe", "Sharpe (annualised)", k.sharpe_note or w.fmt_num(k.sharpe), ""),
        ("exposure", "Open exposure", w.fmt_money(k.exposure), ""),
        ("trades", "Trades", f"{k.trades:,}", ""),
        ("open_positions", "Open positions", str(k.open_positions), ""),
    ]


def health_items(k: Kpis) -> list[w.Kpi]:
    state = {
        "running": "good", "finished": "", "stopped": "", "failed": "bad", "stale": "bad",
        "not running": "bad",
    }.get(k.health, "warn")  # fmt: skip
    alerts = "bad" if k.errors_recent else ""
    return [
        ("health", "Loop", k.health, state),
        ("health_reason", "Loop detail", k.health_reason or "–", state if state == "bad" else ""),
        ("heartbeat", "Last heartbeat", w.fmt_age(k.heartbeat_at), ""),
        (
            "last_bar",
            "Last bar (data)",
            k.last_bar.strftime("%Y-%m-%d %H:%M") if k.last_bar else "–",
            "",
        ),
        ("last_event", "Last event", w.fmt_age(k.last_event), ""),
        ("errors", "Errors/critical (last 1000 events)", str(k.errors_recent), alerts),
        (
            "warnings",
            "Warnings (last 1000)",
            str(k.warnings_recent),
            "warn" if k.warnings_recent else "",
        ),
    ]


class MonitoringApp:
    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.model: MonitoringModel | None = None
        self.engine: Any = None
        self.trades_df = pd.DataFrame()
        self.events_df = pd.DataFrame()
        self.callback: Any = None
        self.last_update_s: float | None = None

        self.positions_df = pd.DataFrame()
        self.kpis_now = Kpis()
        self.built = False
        self.trade_src = ColumnDataSource(w.empty_frame(TRADE_COLS))
        self.position_src = ColumnDataSource(w.empty_frame(POSITION_COLS))
        self.event_src = ColumnDataSource(w.empty_frame(EVENT_COLS))

        self.mode = pn.widgets.Select(label="Mode", options=list(MODES), width=120)
        self.session = pn.widgets.Select(label="Session", options={}, width=520)
        # A button group, not MultiChoice: no Choices.js to load, one click per severity.
        # solid = shown, outline = hidden: the two states must look different
        self.severity = pn.widgets.CheckButtonGroup(
            label="Severity shown",
            options=list(SEVERITIES),
            value=["INFO", "WARNING", "ERROR", "CRITICAL"],
            color="primary",
            variant="outline",
        )
        self.show_decisions = pn.widgets.Checkbox(label="Show DECISION events", value=False)
        self.kpis = w.html_pane(w.kpi_html(kpi_items(Kpis())))
        self.health = w.html_pane(w.kpi_html(health_items(Kpis())), name="health")
        self.notice = w.html_pane("")
        self.status = w.html_pane("")
        self.strip = w.html_pane("", name="status strip")
        self.details = w.html_pane(
            '<div class="atb-sub">Click an event to see its full details.</div>'
        )
        self.charts: SessionCharts | None = None
        self.chart_pane = pn.Column(sizing_mode="stretch_width")

    # -- layout ----------------------------------------------------------------------
    def view(self) -> pn.viewable.Viewable:
        opened = open_page(
            "atb · monitoring",
            self.settings.db_url,
            "runs",
            missing_hint="Record a paper session first; this page reads the run database.",
            empty=("The database has no run records yet.", "Start a paper session:"),
            command=RECORD_CMD,
        )
        if opened.empty is not None:
            return opened.empty
        self.engine, header = opened.engine, opened.header
        all_runs = sessions(self.engine, None, limit=50)
        first = default_session(all_runs)
        if first is not None:
            self.mode.value = first["mode"]
        self._fill_sessions(select=first["id"] if first else None)
        # Under the document lock (guard.in_document): raw Bokeh sources change here.
        n = self.notice
        self.mode.param.watch(in_document(lambda: self._fill_sessions(None), n, "mode"), "value")
        self.session.param.watch(in_document(self._open_session, n, "opening the session"), "value")
        self.severity.param.watch(
            in_document(lambda: self._on_severity(None), n, "severity filter"), "value"
        )
        self.show_decisions.param.watch(
            in_document(self._on_show_decisions, n, "decision filter"), "value"
        )
        self._open_session()
        interval_ms = max(250, int(self.settings.update_interval * 1000))
        self.callback = pn.state.add_periodic_callback(self.update, period=interval_ms)
        # First paint is the header and the KPIs; charts and tables (most of the Bokeh
        # models) are built once the page is on screen (the 2 s first-paint budget).
        self.body = pn.Column(sizing_mode="stretch_width")
        w.after_first_paint(self._build_body)
        return pn.Column(
            header,
            pn.Row(self.mode, self.session),
            self.strip,
            self.notice,
            self.kpis,
            self.health,
            self.body,
            self.status,
            sizing_mode="stretch_width",
        )

    def _build_body(self) -> None:
        self.event_src.selected.on_change("indices", self._on_event_pick)
        self._open_charts()
        self.body.objects = [
            self.chart_pane,
            w.section("Open positions"),
            pn.pane.Bokeh(
                w.data_table(self.position_src, POSITION_COLS, height=120),
                sizing_mode="stretch_width",
            ),
            w.section("Recent trades"),
            pn.pane.Bokeh(
                w.data_table(self.trade_src, TRADE_COLS, height=240), sizing_mode="stretch_width"
            ),
            w.section("System events and alerts"),
            pn.Row(self.severity, self.show_decisions),
            pn.pane.Bokeh(
                w.data_table(self.event_src, EVENT_COLS, height=260), sizing_mode="stretch_width"
            ),
            self.details,
        ]
        self.built = True

    def _open_charts(self) -> None:
        """The session's charts and status board: whole-session reads, after first paint."""
        if self.model is None:
            self.chart_pane.objects = []
            return
        self.charts = SessionCharts(self.model)
        self.charts.set_positions(self.positions_df)
        self.chart_pane.objects = [pn.pane.Bokeh(self.charts.layout, sizing_mode="stretch_width")]
        self._show(self.kpis_now)

    def _on_event_pick(self, _attr: str, _old: Any, new: list[int]) -> None:
        shown = self.events_df.iloc[::-1].reset_index(drop=True)
        if not new or new[0] >= len(shown):
            return
        self.details.object = event_details_html(shown.iloc[new[0]])

    # -- session ---------------------------------------------------------------------
    def _refresh_sessions(self) -> None:
        """Sessions started (or ended) after the page loaded appear without a reload."""
        runs = sessions(self.engine, self.mode.value, limit=200)
        options = {run_label(r): r["id"] for r in runs}
        if options != self.session.options:
            self.session.options = options  # keeps the selected value when still listed

    def _fill_sessions(self, select: str | None) -> None:
        runs = sessions(self.engine, self.mode.value, limit=200)
        options = {run_label(r): r["id"] for r in runs}
        self.session.options = options
        if select in options.values():
            self.session.value = select
        elif options:
            self.session.value = next(iter(options.values()))
        else:
            self.session.value = None
            self._clear()
            self.notice.object = w.empty_state(
                f"No {self.mode.value} sessions recorded in this database.",
                "Record one with:",
                f"python -m atb mode={self.mode.value}"
                + (" exchange=replay" if self.mode.value == "paper" else ""),
            )

    def _clear(self) -> None:
        self.model = None
        self.charts = None
        self.chart_pane.objects = []
        self.strip.object = ""
        self.trade_src.data = w.empty_frame(TRADE_COLS)
        self.position_src.data = w.empty_frame(POSITION_COLS)
        self.event_src.data = w.empty_frame(EVENT_COLS)
        self.kpis.object = w.kpi_html(kpi_items(Kpis()))
        self.health.object = w.kpi_html(health_items(Kpis()))

    def _open_session(self) -> None:
        run_id = self.session.value
        if not run_id:
            return
        self.model = MonitoringModel(self.engine, run_id, severities=self._severities())
        self.charts = None
        if self.show_decisions.value:
            self.model.hidden_types = frozenset()
        snap = self.model.load()
        self.trades_df = snap.trades
        self.events_df = snap.events
        self.trade_src.data = w.frame_data(self.trades_df.iloc[::-1], TRADE_COLS)
        self.position_src.data = w.frame_data(snap.positions, POSITION_COLS)
        self.positions_df = snap.positions
        self.event_src.data = w.frame_data(self.events_df.iloc[::-1], EVENT_COLS)
        self._show(snap.kpis)
        if self.built:  # switching session: the charts follow; on first load after paint
            self._open_charts()
        self.notice.object = (
            ""
            if len(snap.account) or len(snap.trades)
            else w.empty_state(
                "This session has no account snapshots or trades yet.",
                "They appear here as the engine writes them (every update_interval seconds).",
            )
        )

    def _severities(self) -> list[str] | None:
        chosen = list(self.severity.value)
        return None if set(chosen) >= set(SEVERITIES) else chosen

    def _on_severity(self, _event: Any) -> None:
        if self.model is None:
            return
        self.events_df = self.model.set_severities(self._severities())
        self.event_src.data = w.frame_data(self.events_df.iloc[::-1], EVENT_COLS)

    def _on_show_decisions(self) -> None:
        if self.model is None:
            return
        hidden = frozenset() if self.show_decisions.value else HIDDEN_BY_DEFAULT
        self.events_df = self.model.set_hidden_types(hidden)
        self.event_src.data = w.frame_data(self.events_df.iloc[::-1], EVENT_COLS)

    def _show(self, k: Kpis) -> None:
        self.kpis_now = k
        self.kpis.object = w.kpi_html(kpi_items(k))
        self.health.object = w.kpi_html(health_items(k))
        if self.model is not None and self.model.board is not None:
            clock = f"bar {k.last_bar:%Y-%m-%d %H:%M} UTC" if k.last_bar else "no bar yet"
            tone = {"running": "good", "finished": "", "stopped": ""}.get(k.health, "bad")
            strip = strip_html(
                self.model.board,
                (k.health, k.health_reason, tone),
                f"{clock} · events in wall-clock UTC",
                is_backtest=self.model.mode == "backtest",
            )
            if strip != self.strip.object:
                self.strip.object = strip

    # -- periodic update ---------------------------------------------------------------
    def update(self) -> None:
        try:
            self._refresh_sessions()
        except Exception as exc:  # a DB hiccup must not kill the session's callback
            logger.warning("monitoring: session list not refreshed: {}", exc)
        if self.model is None:
            if self.session.value:
                self._open_session()
            return
        try:
            up = self.model.poll()
        except Exception as exc:  # a DB hiccup must not kill the session's callback
            logger.warning("monitoring update failed: {}", exc)
            self.status.object = w.empty_state("Update failed", str(exc)[:300])
            return
        self.last_update_s = up.seconds
        if self.charts is not None:
            self.charts.stream(up.account, up.trades)
            self.charts.set_positions(up.positions)
        if len(up.trades):
            self.trades_df = pd.concat([self.trades_df, up.trades]).tail(self.model.table_rows)
            self.trade_src.data = w.frame_data(self.trades_df.iloc[::-1], TRADE_COLS)
        if len(up.events):
            self.events_df = pd.concat([self.events_df, up.events]).tail(self.model.event_rows)
            self.event_src.data = w.frame_data(self.events_df.iloc[::-1], EVENT_COLS)
        self.position_src.data = w.frame_data(up.positions, POSITION_COLS)
        self.positions_df = up.positions
        self._show(up.kpis)
        if self.notice.object and (len(up.account) or len(up.trades)):
            self.notice.object = ""


def create_app(settings: DashboardSettings | None = None) -> pn.viewable.Viewable:
    return MonitoringApp(settings or DashboardSettings()).view()
