"""De-duplication, re-notification and resolution: one state machine for every rule.

An *incident* is one (rule, key) condition from the moment it fires until it resolves.

* First trigger → a `firing` notification, unless the same rule+key sent a firing less
  than `dedup_window` seconds ago (a flapping condition): then the firing is suppressed
  and sent once the window has passed, if the incident is still open.
* Further triggers while the incident is open are duplicates: folded into its count and
  suppressed. While the condition holds, a reminder goes out every `renotify_interval`.
* When the condition has been false for `clear_after` seconds (or a `clear_on` event
  arrives) the incident resolves: `resolved` is sent if the firing was.

Pure logic on explicit clocks (monotonic for decisions, wall clock for display), so it is
tested without threads or sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from atb.alerts.config import RuleConfig
from atb.alerts.model import Notification, Observation, iso
from atb.alerts.rules import Rule

Action = Literal["notify", "suppressed"]


@dataclass
class Incident:
    rule: str
    key: str
    severity: str
    observation: Observation
    opened: float  # monotonic
    first_seen: float  # wall
    last_seen: float
    count: int = 1
    notified: bool = False
    last_notified: float | None = None
    false_since: float | None = None
    suppressed: int = 0

    def view(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "key": self.key or None,
            "severity": self.severity,
            "summary": self.observation.summary,
            "count": self.count,
            "notified": self.notified,
            "suppressed": self.suppressed,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }


@dataclass
class Outcome:
    action: Action
    notification: Notification


@dataclass
class IncidentBook:
    run_id: str | None = None
    mode: str | None = None
    strategy: str | None = None
    open: dict[tuple[str, str], Incident] = field(default_factory=dict)
    last_firing: dict[tuple[str, str], float] = field(default_factory=dict)

    # -- inputs -----------------------------------------------------------------------

    def trigger(self, rule: Rule, obs: Observation, now: float, wall: float) -> list[Outcome]:
        ident = (rule.name, obs.key)
        inc = self.open.get(ident)
        if inc is not None:
            inc.count += 1
            inc.last_seen = wall
            inc.observation = obs
            inc.false_since = None
            inc.suppressed += 1
            return [Outcome("suppressed", self._note(rule.config, inc, "firing"))]
        inc = Incident(
            rule=rule.name,
            key=obs.key,
            severity=rule.config.severity,
            observation=obs,
            opened=now,
            first_seen=wall,
            last_seen=wall,
            count=max(1, obs.count),
        )
        self.open[ident] = inc
        if self._in_dedup(rule.config, ident, now):
            inc.suppressed += 1
            return [Outcome("suppressed", self._note(rule.config, inc, "firing"))]
        return [self._fire(rule.config, inc, now)]

    def clear(self, rule: Rule, key: str, now: float, wall: float) -> list[Outcome]:
        inc = self.open.pop((rule.name, key), None)
        return [] if inc is None else [self._resolve(rule.config, inc, wall)]

    def tick(
        self, rule: Rule, active: dict[str, Observation], now: float, wall: float
    ) -> list[Outcome]:
        """Time-based transitions for one rule, given the keys whose condition holds now."""
        out: list[Outcome] = []
        cfg = rule.config
        if rule.level_triggered:
            for key, obs in active.items():
                if (rule.name, key) not in self.open:
                    out += self.trigger(rule, obs, now, wall)
        for ident, inc in list(self.open.items()):
            if ident[0] != rule.name:
                continue
            current = active.get(inc.key)
            if current is not None:
                inc.false_since = None
                inc.observation = current
                if rule.level_triggered:
                    inc.last_seen = wall
                    inc.count = max(inc.count, current.count)
                if not inc.notified:
                    if not self._in_dedup(cfg, ident, now):
                        out.append(self._fire(cfg, inc, now))
                elif (
                    cfg.renotify_interval is not None
                    and inc.last_notified is not None
                    and now - inc.last_notified >= cfg.renotify_interval
                ):
                    out.append(self._fire(cfg, inc, now, reminder=True))
                continue
            if inc.false_since is None:
                inc.false_since = now
            if now - inc.false_since >= cfg.clear_after:
                del self.open[ident]
                out.append(self._resolve(cfg, inc, wall))
        return out

    # -- transitions --------------------------------------------------------------------

    def _in_dedup(self, cfg: RuleConfig, ident: tuple[str, str], now: float) -> bool:
        last = self.last_firing.get(ident)
        return last is not None and now - last < cfg.dedup_window

    def _fire(self, cfg: RuleConfig, inc: Incident, now: float, reminder: bool = False) -> Outcome:
        inc.notified = True
        inc.last_notified = now
        self.last_firing[(inc.rule, inc.key)] = now
        return Outcome("notify", self._note(cfg, inc, "firing", reminder=reminder))

    def _resolve(self, cfg: RuleConfig, inc: Incident, wall: float) -> Outcome:
        note = self._note(cfg, inc, "resolved")
        note.summary = f"resolved: {inc.observation.summary}"
        note.last_seen = inc.last_seen
        note.details = {**note.details, "resolved_at": iso(wall)}
        # A resolution is only news to someone who was told about the firing.
        return Outcome("notify" if inc.notified else "suppressed", note)

    def _note(
        self,
        cfg: RuleConfig,
        inc: Incident,
        status: Literal["firing", "resolved"],
        reminder: bool = False,
    ) -> Notification:
        obs = inc.observation
        return Notification(
            rule=inc.rule,
            severity=cfg.severity,
            status=status,
            summary=obs.summary,
            details={
                **obs.details,
                **({"check": cfg.check} if getattr(cfg, "check", None) else {}),
            },
            key=inc.key,
            symbol=obs.symbol,
            first_seen=inc.first_seen,
            last_seen=inc.last_seen,
            count=inc.count,
            reminder=reminder,
            run_id=self.run_id,
            mode=self.mode,
            strategy=self.strategy,
        )
