"""The `alerts` node: listens to the event stream, evaluates rules, dispatches, records.

Threads, and why:

* the emitting thread (the trading loop) runs only `_on_record`: a pre-filter on the
  event name / level and a deque append. Nothing else ever runs on the loop;
* the evaluator (`atb-alerts`) drains that deque, feeds the rules, and every `tick`
  evaluates time-based conditions (heartbeat silence, journal state, windows lapsing,
  reminders, resolution), then hands notifications to the channel workers;
* one worker per channel (`atb.alerts.delivery`) sends with timeout / retry / breaker.

When every channel has reported on a notification, the router journals it once as an
ALERT `system_events` row with the outcome: `alert_sent` is true when at least one
external channel (webhook) delivered it; `alert_method` names those channels, or
`failed:<channels>`, `log` (no external channel configured), or `suppressed` (a
duplicate within the de-duplication window, not sent anywhere).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any

from loguru import logger

from atb.alerts.channels import Channel, LogChannel, LogChannelConfig
from atb.alerts.config import AlertsConfig
from atb.alerts.delivery import BreakerState, ChannelWorker, Result
from atb.alerts.incidents import IncidentBook, Outcome
from atb.alerts.model import LEVEL_NO, SEVERITY_LEVEL, SEVERITY_RANK, Notification
from atb.alerts.rules import Clear, Rule, RuleEnv, Signal, Trigger
from atb.config.base import NodeConfig
from atb.logging.events import log_alert_event
from atb.logging.inbox import EventInbox
from atb.runtime.context import RunContext
from atb.runtime.node import Node


class _Pending:
    """A notification waiting for its channels' results (the last one records it)."""

    def __init__(self, notification: Notification, channels: list[str], record: bool) -> None:
        self.notification = notification
        self.waiting = set(channels)
        self.results: dict[str, Result] = {}
        self.lock = threading.Lock()
        self.record = record
        self.recorded = False  # the row was written before delivery finished
        self.since = time.monotonic()


class AlertRouter(Node[AlertsConfig]):
    def __init__(self, config: NodeConfig, ctx: RunContext, journal: Any = None) -> None:
        super().__init__(config, ctx)
        self.journal = journal
        self.active = ctx.mode in self.config.modes
        env = RuleEnv(ctx=ctx, journal=journal)
        self.rules: list[Rule] = [
            _build(entry, env) for entry in self.config.rules if entry.enabled
        ]
        channels = build_channels(self.config.channels, ctx)
        if not any(isinstance(c, LogChannel) for c in channels):
            # The log channel is always on: an alert nobody can see anywhere is no alert.
            channels.insert(0, LogChannel(LogChannelConfig(), ctx))
        self.unconfigured = [c for c in channels if not c.configured]
        self.workers = [
            ChannelWorker(c, on_state_change=self._channel_state) for c in channels if c.configured
        ]
        self.book = IncidentBook(run_id=ctx.run_id, mode=ctx.mode, strategy=ctx.strategy)
        self._inbox = EventInbox(self.config.queue_size, "atb-alerts")
        self._unregister_probe: Callable[[], None] | None = None
        self._names, self._min_levelno = self._prefilter()
        self._lock = threading.Lock()  # counters and the recent list (several writers)
        self.counts = {"notified": 0, "resolved": 0, "suppressed": 0, "sent": 0, "failed": 0,
                       "events_seen": 0, "events_dropped": 0, "rule_errors": 0,
                       "notifications_sent": 0, "notifications_failed": 0}  # fmt: skip
        # Alerts whose delivery is still running: recorded after `record_delay` anyway.
        self._undelivered: dict[str, _Pending] = {}
        self.recent: deque[dict[str, Any]] = deque(maxlen=20)
        self.last_error: str | None = None
        # Other routes delivering through these channels (the notifier) show their state
        # in this node's /status entry.
        self.attached: dict[str, Callable[[], dict[str, Any]]] = {}

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def external_channels(self) -> list[str]:
        return [w.name for w in self.workers if w.channel.external]

    def start(self) -> None:
        self._unregister_probe = self.ctx.probes.register("alerts", self.state)
        if not self.active:
            logger.debug("alerts: inactive in {} mode (alerts.modes={})", self.ctx.mode,
                         self.config.modes)  # fmt: skip
            return
        for worker in self.workers:
            worker.start()
        self._inbox.open(self._run, self._on_record)
        self._warn_if_unreachable()

    def _warn_if_unreachable(self) -> None:
        if self.external_channels or not self.config.warn_without_channel:
            return
        hint = "set ALERT_WEBHOOK_URL (or alerts.channels.N.url) and run `atb alerts test`"
        if self.ctx.mode == "live":
            bar = "!" * 78
            logger.warning(
                "\n{bar}\nLIVE RUN WITHOUT AN EXTERNAL ALERT CHANNEL: alerts (order rejections, "
                "stale data,\ndatabase down, loop stalled) will only reach the logs. "
                "{hint}\n{bar}",
                bar=bar, hint=hint,
            )  # fmt: skip
        else:
            logger.info("alerts: no external channel configured, alerts go to the logs only; {}",
                        hint)  # fmt: skip

    def stop(self) -> None:
        deadline = time.monotonic() + self.config.stop_timeout
        # The evaluator drains what the loop emitted last (an engine's dying ERROR event is
        # exactly what must get out) before it exits.
        self._inbox.close(max(0.1, deadline - time.monotonic()))
        # Alerts still being delivered are on record now, whatever their channels do next.
        self._record_overdue(force=True)
        for worker in self.workers:
            worker.request_stop()  # all drain at once: the budget is shared, not summed
        for worker in self.workers:
            worker.stop(max(0.0, deadline - time.monotonic()))
        if self._unregister_probe is not None:
            self._unregister_probe()
            self._unregister_probe = None

    # -- the emitting thread ----------------------------------------------------------------

    def _prefilter(self) -> tuple[frozenset[str] | None, int]:
        names: set[str] = set()
        min_level = 1000
        for rule in self.rules:
            interest = rule.interest()
            if interest.names is None:
                return None, 0
            names |= interest.names
            if interest.min_levelno is not None:
                min_level = min(min_level, interest.min_levelno)
        return frozenset(names), min_level

    def _on_record(self, record: dict[str, Any]) -> None:
        """The record listener: runs on the trading loop, so it only filters and appends."""
        names = self._names
        if names is not None and record.get("name") not in names:
            level = LEVEL_NO.get(record.get("level"), 0)  # type: ignore[arg-type]
            if level < self._min_levelno:
                return
        if record.get("event_type") == "alert_event":
            return
        if not self._inbox.offer(record):
            self.counts["events_dropped"] += 1

    # -- the evaluator thread ---------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic() + self.config.tick
        while True:
            timeout = max(0.0, next_tick - time.monotonic())
            self._inbox.wake.wait(timeout)
            self._inbox.wake.clear()
            stopping = self._inbox.stopping.is_set()
            try:
                self._drain()
                now = time.monotonic()
                if now >= next_tick and not stopping:
                    self._tick(now)
                    next_tick = now + self.config.tick
                self._record_overdue()
            except Exception as exc:  # the evaluator must outlive any bug in a rule
                self._note_error(f"evaluator: {type(exc).__name__}: {exc}")
            if stopping:
                return

    def _drain(self) -> None:
        inbox = self._inbox.records
        while inbox:
            record = inbox.popleft()
            self.counts["events_seen"] += 1
            now, wall = time.monotonic(), time.time()
            for rule in self.rules:
                try:
                    if not rule.wants(record):
                        continue
                    signals = rule.observe(record, now)
                except Exception as exc:
                    self._rule_failed(rule, exc)
                    continue
                self._apply(rule, signals, now, wall)

    def _tick(self, now: float) -> None:
        wall = time.time()
        for rule in self.rules:
            try:
                active = rule.poll(now)
            except Exception as exc:
                self._rule_failed(rule, exc)
                continue
            self._dispatch(self.book.tick(rule, active, now, wall))

    def evaluate_now(self) -> None:
        """Drain and tick at once (tests, and callers that cannot wait for the tick)."""
        self._drain()
        self._tick(time.monotonic())

    def _apply(self, rule: Rule, signals: list[Signal], now: float, wall: float) -> None:
        for signal in signals:
            if isinstance(signal, Trigger):
                self._dispatch(self.book.trigger(rule, signal.observation, now, wall))
            elif isinstance(signal, Clear):
                self._dispatch(self.book.clear(rule, signal.key, now, wall))

    def _rule_failed(self, rule: Rule, exc: Exception) -> None:
        self.counts["rule_errors"] += 1
        self._note_error(f"rule {rule.name}: {type(exc).__name__}: {exc}")

    def _note_error(self, message: str) -> None:
        if message != self.last_error:
            logger.error("alerts: {}", message)
        self.last_error = message

    # -- delivery -------------------------------------------------------------------------

    def _dispatch(self, outcomes: list[Outcome]) -> None:
        for outcome in outcomes:
            note = outcome.notification
            if outcome.action == "suppressed":
                with self._lock:
                    self.counts["suppressed"] += 1
                if self.config.record_suppressed:
                    self._record(note, {}, suppressed=True)
                continue
            with self._lock:
                self.counts["resolved" if note.status == "resolved" else "notified"] += 1
            self.send(note)

    def send(
        self, note: Notification, channels: Collection[str] | None = None, record: bool = True
    ) -> list[str]:
        """Hand one notification to every channel whose min_severity it meets.

        `channels` limits it to these channel names; `record=False` (notifications: the
        event behind them is already journaled) skips the system_events row. Returns the
        names of the channels it went to.
        """
        rank = SEVERITY_RANK.get(note.severity, 1)
        workers = [w for w in self.workers
                   if rank >= SEVERITY_RANK.get(w.config.min_severity, 0)
                   and (channels is None or w.name in channels)]  # fmt: skip
        pending = _Pending(note, [w.name for w in workers], record)
        if not workers:
            if record:
                self._record(note, {})
            return []
        if record:
            with self._lock:
                self._undelivered[note.id] = pending
        for worker in workers:
            worker.submit(note, self._collector(pending))
        return [w.name for w in workers]

    def _record_overdue(self, force: bool = False) -> None:
        """Write the row of every alert whose delivery outlasts `record_delay`.

        A slow or dripping receiver must not keep an alert off the record: the row is
        written as `alert_method=pending:<channels>` and the outcome follows as an
        `alert_delivery` row when the channels report.
        """
        if not self._undelivered:
            return
        limit = time.monotonic() - self.config.record_delay
        with self._lock:
            due = [p for p in self._undelivered.values() if force or p.since <= limit]
            for p in due:
                del self._undelivered[p.notification.id]
        for p in due:
            with p.lock:
                if not p.waiting:
                    continue  # finished meanwhile: recorded by _result
                p.recorded = True
                waiting = sorted(p.waiting)
                results = dict(p.results)
            self._record(p.notification, results, pending=waiting)

    def _collector(self, pending: _Pending) -> Callable[[Notification, Result], None]:
        return lambda _note, result: self._result(pending, result)

    def _result(self, pending: _Pending, result: Result) -> None:
        with pending.lock:
            pending.results[result.channel] = result
            pending.waiting.discard(result.channel)
            done = not pending.waiting
            recorded = pending.recorded
        prefix = "notifications_" if pending.notification.status == "notify" else ""
        with self._lock:
            if result.external:
                self.counts[prefix + ("sent" if result.ok else "failed")] += 1
            if done:
                self._undelivered.pop(pending.notification.id, None)
        if not done or not pending.record:
            return
        if recorded:
            self._record_outcome(pending.notification, pending.results)
        else:
            self._record(pending.notification, pending.results)

    @staticmethod
    def _method(results: dict[str, Result]) -> tuple[list[str], str]:
        external = {n: r for n, r in results.items() if r.external}
        sent = [n for n, r in external.items() if r.ok]
        failed = [n for n, r in external.items() if not r.ok]
        if sent:
            return sent, ",".join(sent)
        if failed:
            return sent, "failed:" + ",".join(failed)
        return sent, "log" if results.get("log", Result("log", False)).ok else "none"

    def _record_outcome(self, note: Notification, results: dict[str, Result]) -> None:
        """The delivery outcome of an alert already on record (see `_record_overdue`)."""
        sent, method = self._method(results)
        with self._lock:
            for entry in self.recent:
                if entry.get("id") == note.id:
                    entry.update(alert_sent=bool(sent), alert_method=method)
        self._emit_row({
            "event_type": "ALERT",
            "severity": "INFO" if sent else "WARNING",
            "message": f"delivery of alert {note.rule} ({note.id[:8]}): "
            + ("sent via " + method if sent else method),
            "name": "alert_delivery",
            "logger": "atb.alerts",
            "component": "alerts",
            "details": {"alert_id": note.id, "rule": note.rule,
                        "delivery": {n: r.view() for n, r in results.items()}},
            "context": {k: v for k, v in (("run_id", note.run_id), ("mode", note.mode),
                        ("strategy", note.strategy), ("symbol", note.symbol)) if v},
            "alert_sent": bool(sent),
            "alert_method": method[:32],
        })  # fmt: skip

    def _emit_row(self, row: dict[str, Any]) -> None:
        journal = self.journal or self.ctx.journal
        if journal is None:
            return
        try:
            journal.emit(row)
        except Exception as exc:  # the journal never raises by contract; belt and braces
            self._note_error(f"journal: {type(exc).__name__}: {exc}")

    def _record(
        self,
        note: Notification,
        results: dict[str, Result],
        suppressed: bool = False,
        pending: list[str] | None = None,
    ) -> None:
        """One ALERT system_events row per notification, with the honest outcome
        (`pending:<channels>` when written before its delivery finished)."""
        sent, method = self._method(results)
        if suppressed:
            method = "suppressed"
        elif pending:
            method = "pending:" + ",".join(pending)
        alert = note.alert()
        entry = {"id": note.id, "at": alert["last_seen"] or alert["first_seen"], "rule": note.rule,
                 "status": note.status, "severity": note.severity, "summary": note.summary,
                 "alert_sent": bool(sent), "alert_method": method}  # fmt: skip
        with self._lock:
            self.recent.append(entry)
        journal = self.journal or self.ctx.journal
        if journal is None:
            return
        delivery = {n: r.view() for n, r in results.items()}
        event_type = "TEST" if note.status == "test" else "ALERT"
        try:
            journal.emit({
                "event_type": event_type,
                "severity": SEVERITY_LEVEL.get(note.severity, "WARNING"),
                "message": note.text(),
                "name": f"alert_{note.status}",
                "logger": "atb.alerts",
                "component": "alerts",
                "details": {"alert": alert, "delivery": delivery},
                "context": {k: v for k, v in (("run_id", note.run_id), ("mode", note.mode),
                            ("strategy", note.strategy), ("symbol", note.symbol)) if v},
                "alert_sent": bool(sent),
                "alert_method": method[:32],  # the column's width
                # When the alert was raised, not when its delivery finished (retries can
                # take seconds): rows sort in the order things happened.
                "timestamp": datetime.fromtimestamp(note.created, UTC),
                "error_code": "suppressed_duplicate" if suppressed else None,
            })  # fmt: skip
        except Exception as exc:  # the journal never raises by contract; belt and braces
            self._note_error(f"journal: {type(exc).__name__}: {exc}")

    def _channel_state(self, worker: ChannelWorker, state: BreakerState, error: str | None) -> None:
        if state == "open":
            log_alert_event(
                "alert_channel_down",
                level="ERROR",
                message=f"alert channel '{worker.name}' is down after "
                f"{worker.consecutive_failures} failed deliveries ({error}); failing fast "
                f"for {worker.config.breaker_cooldown:g}s, then trying again",
                channel=worker.name,
                error=error,
                cooldown_seconds=worker.config.breaker_cooldown,
            )
        elif state == "closed":
            log_alert_event(
                "alert_channel_recovered",
                level="INFO",
                message=f"alert channel '{worker.name}' delivered again; circuit closed",
                channel=worker.name,
            )

    # -- /status ----------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        channels = {w.name: w.snapshot() for w in self.workers}
        for ch in self.unconfigured:
            channels[ch.name] = {"state": "not_configured", "healthy": None, **ch.describe()}
        down = [n for n, c in channels.items() if c.get("healthy") is False]
        with self._lock:
            counts = dict(self.counts)
            recent = list(self.recent)
        firing = [inc.view() for inc in list(self.book.open.values())]
        return {
            "status": ("degraded" if down else "ok") if self.active else "inactive",
            "active": self.active,
            "mode": self.ctx.mode,
            "external_channels": self.external_channels,
            "channels": channels,
            "rules": [r.describe() for r in self.rules],
            "firing": firing,
            "counts": counts,
            "queue_depth": len(self._inbox),
            "last_error": self.last_error,
            "recent": recent,
            **{name: fn() for name, fn in list(self.attached.items())},
        }


def _build(entry: Any, env: RuleEnv) -> Rule:
    from atb.config.targets import import_target

    cls = import_target(entry.target)
    rule: Rule = cls(entry, env)
    return rule


def build_channels(entries: list[Any], ctx: RunContext) -> list[Channel]:
    """The channels of the enabled entries (an Apprise entry stands for one per URL)."""
    from atb.config.targets import import_target

    channels: list[Channel] = []
    for entry in entries:
        if entry.enabled:
            cls = import_target(entry.target)
            channels += cls.build(entry, ctx)
    return channels
