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
# "notify": a notification (trade, session, summary), not an alert: no incident behind it.
Status = Literal["firing", "resolved", "test", "notify"]

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
# Detail keys that are for machines or shown elsewhere in the message.
_HIDDEN_DETAILS = frozenset({"check", "event", "command"})
_LABELS = {"pnl": "PnL", "max_drawdown": "Max drawdown", "win_rate": "Win rate"}
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
    #: a notification's title (e.g. "🟢 Opened long BTCUSDT"); alerts build theirs
    title_text: str | None = None
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

    @property
    def kind(self) -> str:
        return "notification" if self.status == "notify" else "alert"

    def title(self) -> str:
        """The headline: a message's subject / title on channels that have one."""
        if self.title_text:
            return self.title_text
        return self.text().split(": ", 1)[0]

    def text(self) -> str:
        """One line that reads well in Slack, Discord, a pager or a log."""
        if self.status == "notify":
            where = self._where()
            line = f"{self.title()}: {self.summary}" if self.summary else self.title()
            return f"{line} ({where})" if where else line
        if self.status == "resolved":
            icon, state = "✅", "RESOLVED"
        elif self.status == "test":
            icon, state = "🧪", "TEST"
        else:
            icon, state = _ICONS.get(self.severity, "⚠️"), "FIRING"
            if self.reminder:
                state = "STILL FIRING"
        where = self._where()
        suffix = f" ({where})" if where else ""
        return f"{icon} [{self.severity.upper()}] {self.rule} {state}: {self.summary}{suffix}"

    def _where(self) -> str:
        return ", ".join(
            part
            for part in (
                self.mode,
                self.strategy,
                f"run {self.run_id[:8]}" if self.run_id else None,
            )
            if part
        )

    def markdown(self) -> str:
        """The body for rich channels (Telegram, Discord, Slack, email): one fact a line."""
        lines = [self.summary] if self.summary else []
        facts: list[tuple[str, Any]] = []
        if self.status != "notify":
            facts.append(("Severity", self.severity))
            if self.count > 1:
                facts.append(("Events", self.count))
        facts += [
            (_LABELS.get(str(k)) or str(k).replace("_", " ").capitalize(), v)
            for k, v in self.details.items()
            if k not in _HIDDEN_DETAILS and v is not None
        ]
        facts += [("Symbol", self.symbol), ("Strategy", self.strategy), ("Mode", self.mode),
                  ("Session", self.run_id[:8] if self.run_id else None)]  # fmt: skip
        lines += [f"*{name}:* {value}" for name, value in facts if value not in (None, "")]
        check = self.details.get("check")
        if check:
            lines.append(f"*What to check:* {check}")
        return "\n".join(lines)

    def payload(self) -> dict[str, Any]:
        """The webhook body: `text` for Slack/Discord-style receivers, `alert` (or
        `notification`) for machines."""
        return {"text": self.text(), "content": self.text(), "kind": self.kind,
                self.kind: self.alert()}  # fmt: skip


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def render(template: str, values: dict[str, Any]) -> str:
    """`str.format` over `values`; unknown names render as `?` instead of failing."""
    try:
        return string.Formatter().vformat(template, (), _Blank(values))
    except (ValueError, IndexError, AttributeError, KeyError, TypeError) as exc:
        return f"{template} [template error: {exc}]"
