"""The monitoring page's status strip: loop, exchange, database/journal, alert rules.

Alert rows (`ALERT` system_events, journaled by atb.alerts.router) are folded into one
state per rule: firing or resolved, firing since, how many notifications, and the last
delivery result (`webhook`, `failed:webhook`, `suppressed`, `log`, ...). A rule that fired
and resolved forty times is one chip, not eighty table rows.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pandas as pd
from sqlalchemy import Connection, or_, select

from atb.dashboards.tables import events, utc

EXCHANGE_EVENTS = {
    "exchange_connected": ("connected", "good"),
    "exchange_retry": ("retrying", "warn"),
    "exchange_unreachable": ("unreachable", "bad"),
}
DB_EVENTS = {
    "db_reconnected": ("ok (reconnected)", "good"),
    "db_connection_failed": ("connection failed", "bad"),
    "db_error": ("write error", "bad"),
    "journal_spilling": ("journal spilling to disk", "warn"),
    "journal_backlog": ("journal backlog", "warn"),
}
WINDOW = 20_000
"""The initial scan covers the session's newest this-many events; newer rows are folded
in as the page polls, so a rule's state stays current however long the page is open."""
STATUS_COLUMNS = ("id", "timestamp", "event_type", "name", "alert_method", "details", "message")


@dataclass
class RuleState:
    rule: str
    firing: bool = False
    since: datetime | None = None
    last_at: datetime | None = None
    notifications: int = 0
    storm: int = 0
    """firing → resolved flips seen: a flapping rule shows its count, not a row each."""
    delivery: str = ""
    severity: str = ""
    summary: str = ""


@dataclass
class StatusBoard:
    rules: dict[str, RuleState] = field(default_factory=dict)
    exchange: tuple[str, str, datetime | None] | None = None
    database: tuple[str, str, datetime | None] | None = None

    max_id: int = 0
    """The newest event id folded: the initial read and the page's polls overlap, and an
    alert row can land after later events (its timestamp is when it was raised)."""

    def fold(self, frame: pd.DataFrame) -> None:
        """Fold status-relevant event rows (oldest first) into the board, each once."""
        if not len(frame):
            return
        frame = frame[frame["id"] > self.max_id]
        if len(frame):
            self.max_id = int(frame["id"].max())
        for row in frame.itertuples(index=False):
            at = utc(row.timestamp)
            name = str(row.name or "")
            if row.event_type == "ALERT":
                self._alert(row, at)
            elif name in EXCHANGE_EVENTS:
                label, tone = EXCHANGE_EVENTS[name]
                self.exchange = (label, tone, at)
            elif name in DB_EVENTS:
                label, tone = DB_EVENTS[name]
                self.database = (label, tone, at)

    def _alert(self, row: Any, at: datetime | None) -> None:
        details = row.details
        if isinstance(details, str):
            try:
                details = json.loads(details)
            except ValueError:
                details = {}
        alert = (details or {}).get("alert") or {}
        rule = str(alert.get("rule") or row.name or "alert")
        status = str(alert.get("status") or str(row.name or "").removeprefix("alert_"))
        if status not in ("firing", "resolved"):
            return
        state = self.rules.setdefault(rule, RuleState(rule))
        state.notifications += 1
        state.last_at = at
        state.delivery = str(row.alert_method or "")
        state.severity = str(alert.get("severity") or state.severity)
        state.summary = str(alert.get("summary") or row.message or "")[:160]
        if status == "firing":
            if not state.firing:
                state.since = at
            state.firing = True
        else:
            if state.firing:
                state.storm += 1
            state.firing = False


def status_events(conn: Connection, session_id: str, after_id: int = 0) -> pd.DataFrame:
    """The session's alert, exchange and database events with an id above `after_id`,
    among its newest WINDOW."""
    where = [events.c.session_id == session_id]
    if after_id:
        where.append(events.c.id > after_id)
    recent = (
        select(*[events.c[c] for c in STATUS_COLUMNS])
        .where(*where)
        .order_by(events.c.timestamp.desc())
        .limit(WINDOW)
        .subquery()
    )
    names = sorted({*EXCHANGE_EVENTS, *DB_EVENTS})
    query = (
        select(recent)
        .where(or_(recent.c.event_type == "ALERT", recent.c.name.in_(names)))
        .order_by(recent.c.timestamp, recent.c.id)
    )
    rows = conn.execute(query).all()
    return pd.DataFrame([tuple(r) for r in rows], columns=list(STATUS_COLUMNS))


def relevant(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a polled event batch that change the board."""
    if not len(frame):
        return frame
    names = {*EXCHANGE_EVENTS, *DB_EVENTS}
    return frame[(frame["event_type"] == "ALERT") | frame["name"].isin(names)]


def _chip(key: str, label: str, value: str, tone: str, title: str = "") -> str:
    tip = f' title="{html.escape(title)}"' if title else ""
    return (
        f'<div class="atb-chip {tone}" data-status="{html.escape(key)}"{tip}>'
        f'<span class="label">{html.escape(label)}</span> '
        f'<span class="value">{html.escape(value)}</span></div>'
    )


def _when(at: datetime | None) -> str:
    return f"{at:%m-%d %H:%M} UTC" if at else "?"


def strip_html(
    board: StatusBoard,
    loop: tuple[str, str, str],
    clock: str,
    is_backtest: bool = False,
) -> str:
    """The strip's HTML: loop (label, reason, tone), exchange, DB/journal, clock, rules."""
    label, reason, tone = loop
    chips = [_chip("loop", "Loop", label, tone, reason)]
    if is_backtest:
        chips.append(_chip("exchange", "Exchange", "none (backtest)", ""))
    elif board.exchange is not None:
        text, t, at = board.exchange
        chips.append(_chip("exchange", "Exchange", f"{text} · {_when(at)}", t))
    else:
        chips.append(_chip("exchange", "Exchange", "no exchange events", "",
                           "replay sessions and quiet feeds write none"))  # fmt: skip
    if board.database is not None:
        text, t, at = board.database
        chips.append(_chip("db", "DB / journal", f"{text} · {_when(at)}", t))
    else:
        chips.append(_chip("db", "DB / journal", "ok (no errors journaled)", "good"))
    chips.append(_chip("clock", "Clock", clock, ""))
    rules = sorted(board.rules.values(), key=lambda r: (not r.firing, r.rule))
    for r in rules:
        state = "FIRING" if r.firing else "resolved"
        when = f"since {_when(r.since)}" if r.firing else f"at {_when(r.last_at)}"
        flips = f" · resolved {r.storm}× before" if r.storm else ""
        delivery = r.delivery or "–"
        bad = delivery.startswith("failed") or delivery == "suppressed"
        value = f"{state} {when} · {r.notifications} notifications{flips} · last delivery: "
        tone = "bad" if r.firing else "good"
        chips.append(
            f'<div class="atb-chip alert {tone}" data-rule="{html.escape(r.rule)}" '
            f'data-state="{state.lower()}" title="{html.escape(r.summary)}">'
            f'<span class="label">Alert {html.escape(r.rule)}</span> '
            f'<span class="value">{html.escape(value)}'
            f'<b class="{"bad" if bad else ""}">{html.escape(delivery)}</b></span></div>'
        )
    if not rules:
        chips.append(_chip("alerts", "Alerts", "none journaled for this session", "good"))
    return f'<div class="atb-strip" id="status-strip">{"".join(chips)}</div>'
