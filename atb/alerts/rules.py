"""Alert rules: what counts as a problem.

A rule is a class named by `_target_` in `alerts.rules`, with its own settings model. The
router calls it on its evaluator thread, never on the trading loop:

* `observe(record, now)` for each event record the rule `wants` → signals: a `Trigger`
  (the condition fired for a key) or a `Clear` (a clearing event for a key);
* `poll(now)` every tick → the keys whose condition holds right now. Event rules use it
  to let a condition lapse when the window empties; state rules (heartbeat, journal) are
  `level_triggered`: a key that holds opens an incident.

What happens next (first notification, duplicates, reminders, resolution) is the same for
every rule: see `atb.alerts.incidents`. Users add rules in YAML; `EventCountRule` covers
any "≥ N events named X (per symbol) within T seconds" condition without code.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from atb.alerts.config import RuleConfig
from atb.alerts.model import LEVEL_NO, Observation, Severity, render
from atb.config.base import field_error
from atb.runtime.context import RunContext
from atb.runtime.probes import Probes

Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Trigger:
    observation: Observation


@dataclass(frozen=True)
class Clear:
    key: str
    reason: str


Signal = Trigger | Clear


@dataclass
class RuleEnv:
    """What a rule may read: the run, the probes, the journal node (if the run has one)."""

    ctx: RunContext
    journal: Any = None

    @property
    def probes(self) -> Probes:
        return self.ctx.probes


@dataclass(frozen=True)
class Interest:
    """Cheap pre-filter for the listener: event names, or a minimum level (None: neither)."""

    names: frozenset[str] | None
    min_levelno: int | None = None


class Rule:
    config_model: ClassVar[type[RuleConfig]] = RuleConfig
    default_name: ClassVar[str] = "rule"
    level_triggered: ClassVar[bool] = False

    def __init__(self, config: RuleConfig, env: RuleEnv) -> None:
        self.config = config
        self.env = env
        self.name = config.display_name()

    def interest(self) -> Interest:
        return Interest(frozenset())

    def wants(self, record: dict[str, Any]) -> bool:
        return False

    def observe(self, record: dict[str, Any], now: float) -> list[Signal]:
        return []

    def poll(self, now: float) -> dict[str, Observation]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": type(self).__name__, "severity": self.config.severity}


def record_value(record: dict[str, Any], key: str) -> Any:
    """A field of the event, else of its log context (symbol, strategy, ...)."""
    fields = record.get("fields") or {}
    if key in fields:
        return fields[key]
    context = record.get("context") or {}
    return context.get(key)


# -- event rules ------------------------------------------------------------------------


class EventCountRuleConfig(RuleConfig):
    target: str = Field("atb.alerts.rules.EventCountRule", alias="_target_", min_length=1)
    events: list[str] = Field(default_factory=list, description="event names; empty: any name")
    event_types: list[str] = Field(
        default_factory=list, description="emitter families (order_event, ...); empty: any"
    )
    min_level: Level | None = Field(None, description="only records at or above this level")
    where: dict[str, Scalar] = Field(
        default_factory=dict, description="fields that must equal these values"
    )
    group_by: list[str] = Field(
        default_factory=list, description="one incident per distinct value (e.g. [symbol])"
    )
    threshold: int = Field(1, ge=1, description="events within `window` that fire the rule")
    window: float = Field(300.0, gt=0, description="seconds")
    clear_on: list[str] = Field(
        default_factory=list, description="event names that resolve the condition at once"
    )
    max_groups: int = Field(1000, ge=1, description="distinct groups tracked (oldest dropped)")

    @model_validator(mode="after")
    def _selects_something(self) -> EventCountRuleConfig:
        if not (self.events or self.event_types or self.min_level):
            raise field_error("events", "name at least one event (or set event_types / min_level)")
        return self


class EventCountRule(Rule):
    """≥ `threshold` matching events within `window` seconds, per `group_by` key.

    The condition holds while the window still holds `threshold` events; `clear_on`
    events (e.g. a reconnect) end it at once.
    """

    config_model = EventCountRuleConfig
    default_name = "event_count"
    config: EventCountRuleConfig

    def __init__(self, config: EventCountRuleConfig, env: RuleEnv) -> None:
        super().__init__(config, env)
        self._events = frozenset(config.events)
        self._types = frozenset(config.event_types)
        self._clear = frozenset(config.clear_on)
        self._min = LEVEL_NO[config.min_level] if config.min_level else None
        self._times: dict[str, deque[float]] = {}
        self._last: dict[str, dict[str, Any]] = {}

    def interest(self) -> Interest:
        if self._events:
            return Interest(self._events | self._clear)
        return Interest(None if self._min is None else self._clear, self._min)

    def _matches(self, record: dict[str, Any]) -> bool:
        if record.get("event_type") == "alert_event":
            return False  # never alert on alerts (no feedback loop)
        if self._events and record.get("name") not in self._events:
            return False
        if self._types and record.get("event_type") not in self._types:
            return False
        if self._min is not None and LEVEL_NO.get(str(record.get("level")), 0) < self._min:
            return False
        return all(record_value(record, k) == v for k, v in self.config.where.items())

    def wants(self, record: dict[str, Any]) -> bool:
        return record.get("name") in self._clear or self._matches(record)

    def key_of(self, record: dict[str, Any]) -> str:
        return ",".join(f"{k}={record_value(record, k)}" for k in self.config.group_by)

    def observe(self, record: dict[str, Any], now: float) -> list[Signal]:
        key = self.key_of(record)
        if record.get("name") in self._clear and not self._matches(record):
            self._times.pop(key, None)
            return [Clear(key, f"{record.get('name')}")]
        times = self._times.get(key)
        if times is None:
            if len(self._times) >= self.config.max_groups:
                oldest = min(self._times, key=lambda k: self._times[k][-1] if self._times[k] else 0)
                self._times.pop(oldest, None)
                self._last.pop(oldest, None)
            times = self._times[key] = deque()
        times.append(now)
        self._prune(times, now)
        self._last[key] = self._snapshot(record)
        if len(times) < self.config.threshold:
            return []
        return [Trigger(self._observation(key, len(times)))]

    def poll(self, now: float) -> dict[str, Observation]:
        active: dict[str, Observation] = {}
        for key in list(self._times):
            times = self._times[key]
            self._prune(times, now)
            if not times:
                del self._times[key]
                self._last.pop(key, None)
            elif len(times) >= self.config.threshold:
                active[key] = self._observation(key, len(times))
        return active

    def _prune(self, times: deque[float], now: float) -> None:
        horizon = now - self.config.window
        while times and times[0] < horizon:
            times.popleft()

    @staticmethod
    def _snapshot(record: dict[str, Any]) -> dict[str, Any]:
        return {
            "event": record.get("name"),
            "event_type": record.get("event_type"),
            "level": record.get("level"),
            "message": record.get("message"),
            "logger": record.get("logger"),
            "fields": dict(record.get("fields") or {}),
            "context": dict(record.get("context") or {}),
        }

    def _observation(self, key: str, count: int) -> Observation:
        last = self._last.get(key, {})
        fields: dict[str, Any] = last.get("fields", {})
        context: dict[str, Any] = last.get("context", {})
        symbol = fields.get("symbol") or context.get("symbol")
        values = {
            **context,
            **fields,
            "count": count,
            "threshold": self.config.threshold,
            "window": f"{self.config.window:g}",
            "event": last.get("event") or "event",
            "message": last.get("message"),
            "key": key,
            "symbol": symbol,
        }
        if self.config.summary:
            summary = render(self.config.summary, values)
        elif self.config.threshold > 1:
            where = f" for {key}" if key else ""
            summary = f"{count}× {values['event']}{where} within {self.config.window:g}s"
        else:
            event, message = str(values["event"]), last.get("message")
            summary = event + (f" for {key}" if key else "")
            if message and message != event:
                summary += f": {message}"
            reason = fields.get("reason") or fields.get("error")
            if reason and str(reason) not in summary:
                summary += f" ({reason})"
        details = {
            "count_in_window": count,
            "threshold": self.config.threshold,
            "window_seconds": self.config.window,
            "last_event": {k: v for k, v in last.items() if k != "context"},
        }
        if key:
            details["group"] = key
        return Observation(key, summary, details, str(symbol) if symbol else None, count)

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "events": sorted(self._events),
            "threshold": self.config.threshold,
            "window": self.config.window,
            "group_by": self.config.group_by,
        }


# -- state rules ------------------------------------------------------------------------


class HeartbeatSilenceRuleConfig(RuleConfig):
    target: str = Field("atb.alerts.rules.HeartbeatSilenceRule", alias="_target_", min_length=1)
    severity: Severity = "critical"
    silence: float | None = Field(
        None,
        gt=0,
        description="seconds without a loop heartbeat (null: 3 × the loop's "
        "interval, 180 s if it publishes none)",
    )
    startup_grace: float = Field(
        120.0, ge=0, description="extra seconds the loop may take to beat for the first time"
    )


class HeartbeatSilenceRule(Rule):
    """The trading loop stalled: the run's heartbeat (`ctx.probes`) is silent for `silence` s.

    Silent while no loop runs (backtests, before the engine starts) and while the run is
    stopping: a loop that finished is not a loop that stalled.
    """

    config_model = HeartbeatSilenceRuleConfig
    default_name = "loop_stalled"
    level_triggered = True
    config: HeartbeatSilenceRuleConfig

    def limit(self) -> float:
        if self.config.silence is not None:
            return self.config.silence
        hb = self.env.probes.heartbeat
        # The liveness floor (atb.runtime.probes.MIN_SILENCE) and a failure cooldown the
        # loop announced are the same as on /health: one definition of "stalled".
        return hb.silence_limit() if hb.interval else 180.0

    def poll(self, now: float) -> dict[str, Observation]:
        hb = self.env.probes.heartbeat
        if self.env.ctx.stopping or hb.stopped_at is not None:
            return {}  # a loop that is stopping or has ended did not stall
        limit = self.limit()
        age = hb.pulse_age()
        if age is None:
            if hb.started_at is None:
                return {}  # no loop in this run (yet)
            waited = time.time() - hb.started_at
            if waited <= limit + self.config.startup_grace:
                return {}
            summary = f"trading loop has not beaten once in {waited:.0f}s since it started"
            age = waited
        elif age <= limit:
            return {}
        else:
            summary = f"trading loop stalled: no heartbeat for {age:.0f}s (limit {limit:g}s)"
        if self.config.summary:
            summary = render(
                self.config.summary,
                {"age": f"{age:.0f}", "limit": f"{limit:g}", "iterations": hb.iterations},
            )
        details = {
            "heartbeat_age_seconds": round(age, 3),
            "silence_limit_seconds": limit,
            "iterations": hb.iterations,
            "last_beat_at": hb.snapshot().get("last_beat_at"),
        }
        return {"": Observation("", summary, details, self.env.ctx.symbol)}


class JournalSpillRuleConfig(RuleConfig):
    target: str = Field("atb.alerts.rules.JournalSpillRule", alias="_target_", min_length=1)
    severity: Severity = "error"
    probe: str = Field("journal", description="probe provider publishing the journal state")
    min_pending: int = Field(
        1, ge=1, description="spilled events awaiting replay that count as spilling"
    )


class JournalSpillRule(Rule):
    """The database is unreachable and the journal is spilling events to disk.

    Reads the journal's published state (probe "journal", else the journal node):
    fires when `db_available` is false or spilled events await replay; resolves once the
    database is back and the spill file is replayed.
    """

    config_model = JournalSpillRuleConfig
    default_name = "journal_spilling"
    level_triggered = True
    config: JournalSpillRuleConfig

    def state(self) -> dict[str, Any] | None:
        try:
            state = self.env.probes.read(self.config.probe)
        except Exception:  # a broken provider is the health server's business
            state = None
        if state is None:
            journal = self.env.journal or self.env.ctx.journal
            if journal is not None and hasattr(journal, "state"):
                state = journal.state()
        return state if isinstance(state, dict) else None

    def poll(self, now: float) -> dict[str, Observation]:
        state = self.state()
        if state is None:
            return {}
        down = state.get("db_available") is False
        pending = int(state.get("spill_pending") or 0)
        if not down and pending < self.config.min_pending:
            return {}
        error = state.get("last_error")
        if down:
            summary = "database unavailable: journal is spilling events to disk"
        else:
            summary = f"{pending} journal events spilled to disk await replay"
        if pending:
            summary += f" ({pending} pending in {state.get('spill_path')})"
        if down and error:
            summary += f"; last error: {error}"
        if self.config.summary:
            summary = render(self.config.summary, {**state, "pending": pending})
        details = {
            k: state.get(k)
            for k in ("db_available", "spill_pending", "spilled", "queue_depth", "last_error",
                      "last_error_at", "last_write_at", "spill_path")
        }  # fmt: skip
        return {"": Observation("", summary, details, None, max(1, pending))}
