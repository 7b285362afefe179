"""What rules observe and what channels deliver.

An `Observation` is a rule's statement about one key ("symbol=BTCUSDT": 3 rejections in
60 s). A `Notification` is one message to the operator: a firing (first or reminder), a
resolution, or a test. Its `payload()` is the webhook body, and what goes into
`system_events.details`, so it only carries values that are already redacted.
"""

from __future__ import annotations

import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from atb.logging.core import LEVEL_NOS

Severity = Literal["info", "warning", "error", "critical"]
Status = Literal["firing", "resolved", "test"]

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2, "critical": 3}
# The log level an alert is written at, and the system_events.severity it is stored with.
SEVERITY_LEVEL: dict[str, str] = {
    "info": "INFO",
    "warning": "WARNING",
    "error": "ERROR",
    "critical": "CRITICAL",
}
# Level names of log records (as the logging core writes them) → numbers.
LEVEL_NO: dict[str, int] = LEVEL_NOS
_ICONS = {"info": "🔵", "warning": "🟠", "error": "🔴", "critical": "🚨"}


def iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


@dataclass(frozen=True)
class Observation:
    """A rule's finding about one key; `count` is how many events back it (1 for states)."""

    key: str
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    symbol: str | None = None
    count: int = 1


@dataclass
class Notification:
    rule: str
    severity: str
    status: Status
    summary: str
    details: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    symbol: str | None = None
    first_seen: float | None = None  # wall clock
    last_seen: float | None = None
    count: int = 1
    reminder: bool = False
    run_id: str | None = None
    mode: str | None = None
    strategy: str | None = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    created: float = field(default_factory=lambda: datetime.now(UTC).timestamp())

    def alert(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "rule": self.rule,
            "severity": self.severity,
            "status": self.status,
            "summary": self.summary,
            "details": self.details,
            "key": self.key or None,
            "first_seen": iso(self.first_seen),
            "last_seen": iso(self.last_seen),
            "count": self.count,
            "reminder": self.reminder,
            "run_id": self.run_id,
            "mode": self.mode,
            "strategy": self.strategy,
            "symbol": self.symbol,
        }

    def text(self) -> str:
        """One line that reads well in Slack, Discord, a pager or a log."""
        if self.status == "resolved":
            icon, state = "✅", "RESOLVED"
        elif self.status == "test":
            icon, state = "🧪", "TEST"
        else:
            icon, state = _ICONS.get(self.severity, "⚠️"), "FIRING"
            if self.reminder:
                state = "STILL FIRING"
        where = ", ".join(
            part
            for part in (
                self.mode,
                self.strategy,
                f"run {self.run_id[:8]}" if self.run_id else None,
            )
            if part
        )
        suffix = f" ({where})" if where else ""
        return f"{icon} [{self.severity.upper()}] {self.rule} {state}: {self.summary}{suffix}"

    def payload(self) -> dict[str, Any]:
        """The webhook body: `text` for Slack/Discord-style receivers, `alert` for machines."""
        return {"text": self.text(), "content": self.text(), "alert": self.alert()}


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def render(template: str, values: dict[str, Any]) -> str:
    """`str.format` over `values`; unknown names render as `?` instead of failing."""
    try:
        return string.Formatter().vformat(template, (), _Blank(values))
    except (ValueError, IndexError, AttributeError, KeyError, TypeError) as exc:
        return f"{template} [template error: {exc}]"
