"""System events as the monitoring page shows them: a compact details column in the
table, and the whole event (message, every detail field) when a row is clicked."""

from __future__ import annotations

import html
import json
from typing import Any

import pandas as pd

from atb.dashboards.tables import naive_utc

DETAIL_KEYS = (
    "side", "qty", "price", "fee", "pnl", "reason", "action", "signal", "size", "status",
    "error", "code", "drawdown", "note",
)  # fmt: skip
"""The event fields the table shows, in this order (others follow, up to MAX_DETAILS)."""
MAX_DETAILS = 8


def _as_dict(details: Any) -> dict[str, Any] | str:
    if isinstance(details, str):
        try:
            details = json.loads(details)
        except ValueError:
            return details
    return details if isinstance(details, dict) else {}


def _scalar(value: Any) -> bool:
    return value not in (None, "", [], {}) and not isinstance(value, dict | list)


def details_text(details: Any) -> str:
    """`qty=0.1 price=42,000.00 fee=4.20 reason=signal`: an event's own fields, compact."""
    fields = _as_dict(details)
    if isinstance(fields, str):
        return fields[:200]
    known = [k for k in DETAIL_KEYS if _scalar(fields.get(k))]
    keys = known + [k for k in fields if k not in DETAIL_KEYS and _scalar(fields[k])]
    parts = []
    for key in keys[:MAX_DETAILS]:
        value = fields[key]
        if isinstance(value, float):
            text = f"{value:,.2f}" if abs(value) >= 100 else f"{value:.6g}"
        else:
            text = str(value)
        parts.append(f"{key}={text[:60]}")
    return " ".join(parts)


def event_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Table columns of event rows; the raw details kept (as JSON text) for the expander."""
    out = df.copy()
    if len(out):
        out["timestamp"] = naive_utc(out["timestamp"])
        out["name"] = out["name"].fillna("")
        out["component"] = out["component"].fillna("")
        out["details_text"] = [details_text(d) for d in out["details"]]
        out["details_json"] = [
            json.dumps(_as_dict(d), indent=2, default=str, sort_keys=True) for d in out["details"]
        ]
    else:
        out["details_text"] = pd.Series(dtype=object)
        out["details_json"] = pd.Series(dtype=object)
    return out.drop(columns=["details"], errors="ignore")


def event_details_html(row: pd.Series) -> str:
    """One event in full: when, what, the message and every detail field."""
    head = (
        f"{row.get('timestamp'):%Y-%m-%d %H:%M:%S} UTC (wall clock) · {row.get('severity')} · "
        f"{row.get('event_type')} · {row.get('name') or ''}"
    )
    return (
        f'<div id="event-details"><b>{html.escape(head)}</b>'
        f"<p>{html.escape(str(row.get('message') or ''))}</p>"
        f'<div class="atb-details">{html.escape(str(row.get("details_json") or "{}"))}</div></div>'
    )
