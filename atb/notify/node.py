"""The `notify` node (see the package docstring): listens, rate-limits, formats, delivers."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from loguru import logger

from atb.alerts.model import Notification
from atb.config.base import NodeConfig
from atb.logging.inbox import EventInbox
from atb.notify.config import NotifyConfig, RouteConfig, RoutesConfig
from atb.notify.limits import Period, RouteLimiter
from atb.notify.messages import FORMATTERS, Composer, money, num
from atb.runtime.context import RunContext
from atb.runtime.node import Node


class Notifier(Node[NotifyConfig]):
    def __init__(self, config: NodeConfig, ctx: RunContext, alerts: Any = None) -> None:
        super().__init__(config, ctx)
        self.router = alerts
        routes = self.config.routes
        self.routes: dict[str, RouteConfig] = {
            name: getattr(routes, name)
            for name in RoutesConfig.model_fields
            if getattr(routes, name).enabled
        }
        self._by_event: dict[str, str] = {}
        for name, route in self.routes.items():
            for event in route.events:
                self._by_event.setdefault(event, name)
        self._limiters = {n: RouteLimiter(r.rate_limit, r.per) for n, r in self.routes.items()}
        self.active = False
        self.reason = ""
        self.channels: list[str] = []
        self._inbox = EventInbox(self.config.queue_size, "atb-notify")
        self.composer = Composer(ctx, self.routes)
        self._unregister_probe: Callable[[], None] | None = None
        self.counts: dict[str, int] = {
            "events_seen": 0,
            "events_dropped": 0,
            "notified": 0,
            "held_back": 0,
            "errors": 0,
        }
        self.per_route: dict[str, int] = {name: 0 for name in self.routes}
        self.last_error: str | None = None
        # For the summary: open positions (position_no → entry), equity, the period.
        self._open: dict[Any, dict[str, Any]] = {}
        self._balance: float | None = None
        self._equity: float | None = None
        self._peak: float | None = None
        self._period = Period(started=time.time())
        self._next_summary: float | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._unregister_probe = self.ctx.probes.register("notify", self.state)
        router = self.router
        if router is not None and hasattr(router, "attached"):
            router.attached["notifications"] = self.state  # /status: under `alerts`
        if self.ctx.mode not in self.config.modes:
            self.reason = f"off in {self.ctx.mode} mode (notify.modes={self.config.modes})"
        elif router is None:
            self.reason = "no alert router (alerts=off): no channel to notify through"
        elif not getattr(router, "active", False):
            self.reason = f"the alert router is inactive in {self.ctx.mode} mode"
        else:
            self.channels = self._pick_channels(router)
            if not self.channels:
                self.reason = (
                    "no external channel configured (set ALERT_APPRISE_URLS or "
                    "ALERT_WEBHOOK_URL; check with `atb alerts test`)"
                )
        if self.reason:
            logger.info("notify: {}", self.reason)
            return
        self.active = True
        if self.config.daily_summary.enabled:
            self._next_summary = self._next_summary_at(time.time())
        self._inbox.open(self._run, self._on_record)
        logger.info(
            "notify: {} via {}", ", ".join(self.routes) or "no routes", ", ".join(self.channels)
        )

    def _pick_channels(self, router: Any) -> list[str]:
        names = [w.name for w in router.workers if w.channel.external]
        wanted = self.config.channels
        if wanted is None:
            return names
        return [n for n in names if any(n == w or n.startswith(w + ".") for w in wanted)]

    def stop(self) -> None:
        self._inbox.close(self.config.stop_timeout)  # engine_stop, the final close still go out
        if self._unregister_probe is not None:
            self._unregister_probe()
            self._unregister_probe = None

    # -- the emitting thread ----------------------------------------------------------------

    def _on_record(self, record: dict[str, Any]) -> None:
        """Runs on the trading loop: a name check and an append, nothing else."""
        if record.get("name") not in self._by_event:
            return
        if not self._inbox.offer(record):
            self.counts["events_dropped"] += 1

    # -- the notifier thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._inbox.wake.wait(0.5)
            self._inbox.wake.clear()
            stopping = self._inbox.stopping.is_set()
            try:
                while self._inbox.records:
                    self._handle(self._inbox.records.popleft())
                # At the end, what was held back is reported now: there is no later.
                self._release_held(time.monotonic(), force=stopping)
                if self._next_summary is not None and time.time() >= self._next_summary:
                    self.send_summary()
                    self._next_summary = self._next_summary_at(time.time())
            except Exception as exc:  # a formatting bug must not end notifications
                self.counts["errors"] += 1
                message = f"{type(exc).__name__}: {exc}"
                if message != self.last_error:
                    logger.error("notify: {}", message)
                self.last_error = message
            if stopping:
                return

    def _handle(self, record: dict[str, Any]) -> None:
        self.counts["events_seen"] += 1
        name = str(record.get("name"))
        fields = dict(record.get("fields") or {})
        context = dict(record.get("context") or {})
        self._track(name, fields)
        route = self._by_event.get(name)
        if route is None or route not in self.routes:
            return
        if not self._limiters[route].allow(time.monotonic()):
            self.counts["held_back"] += 1
            return
        note = FORMATTERS[route](self.composer, fields, context)
        if note is not None:
            self._send(route, note)

    def _send(self, route: str, note: Notification) -> None:
        self.counts["notified"] += 1
        self.per_route[route] = self.per_route.get(route, 0) + 1
        self.router.send(note, channels=self.channels, record=False)

    def _release_held(self, now: float, force: bool = False) -> None:
        for route, limiter in self._limiters.items():
            held = limiter.release_held(now, force)
            if held:
                cfg = self.routes[route]
                self._send(
                    route,
                    self.composer.note(
                        route,
                        f"⏸ {held} more {route.replace('_', ' ')} notification"
                        f"{'s' if held != 1 else ''} held back",
                        f"rate limit: {cfg.rate_limit} per {cfg.per:g}s; every event is in the "
                        "logs and system_events",
                        {"held_back": held},
                        severity=cfg.severity,
                    ),
                )

    # -- summary state --------------------------------------------------------------------

    def _track(self, name: str, fields: dict[str, Any]) -> None:
        if name == "engine_start":
            self._balance = num(fields.get("balance"))
            self._equity = self._peak = self._balance
        elif name == "open_position":
            self._open[fields.get("position_no")] = fields
        elif name == "close_position":
            entry = self._open.pop(fields.get("position_no"), None)
            if entry is not None:
                fields["_entry_price"] = entry.get("entry_price")
            pnl = num(fields.get("pnl")) or 0.0
            period = self._period
            period.trades += 1
            period.wins += pnl > 0
            period.pnl += pnl
            if self._equity is not None and self._peak is not None:
                self._equity += pnl
                self._peak = max(self._peak, self._equity)
                if self._peak > 0:
                    dd = 1.0 - self._equity / self._peak
                    period.max_drawdown = max(period.max_drawdown, dd)
        elif name == "engine_stop":
            self._balance = num(fields.get("balance"))

    def _next_summary_at(self, now: float) -> float:
        cfg = self.config.daily_summary
        zone = ZoneInfo(cfg.timezone)
        parts = [int(p) for p in cfg.at.split(":")] + [0]
        local = datetime.fromtimestamp(now, zone)
        due = local.replace(hour=parts[0], minute=parts[1], second=parts[2], microsecond=0)
        if due.timestamp() <= now:
            due += timedelta(days=1)
        return due.timestamp()

    def send_summary(self) -> None:
        """The daily summary for the period since the last one (or the session start)."""
        period, now = self._period, time.time()
        self._period = Period(started=now, max_drawdown=0.0)
        win_rate = f"{period.wins / period.trades:.0%}" if period.trades else "n/a"
        since = datetime.fromtimestamp(period.started, UTC).strftime("%Y-%m-%d %H:%M UTC")
        details = {
            "pnl": money(period.pnl),
            "trades": period.trades,
            "win_rate": win_rate,
            "max_drawdown": f"{period.max_drawdown:.2%} (realized)",
            "open_positions": len(self._open),
            "equity": money(self._equity) if self._equity is not None else None,
            "since": since,
        }
        sign = "📈" if period.pnl > 0 else "📉" if period.pnl < 0 else "📊"
        summary = (
            f"PnL {money(period.pnl)}, {period.trades} trade"
            f"{'s' if period.trades != 1 else ''}, win rate {win_rate}, "
            f"{len(self._open)} open"
        )
        note = self.composer.note(
            "daily_summary", f"{sign} Daily summary {self.ctx.symbol}", summary, details
        )
        self.counts["notified"] += 1
        self.per_route["daily_summary"] = self.per_route.get("daily_summary", 0) + 1
        self.router.send(note, channels=self.channels, record=False)

    def state(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.active else "inactive",
            "active": self.active,
            "reason": self.reason or None,
            "channels": self.channels,
            "routes": {
                name: {
                    "events": r.events,
                    "rate_limit": r.rate_limit,
                    "per": r.per,
                    "sent": self.per_route.get(name, 0),
                    "held_back": self._limiters[name].held_total,
                }
                for name, r in self.routes.items()
            },
            "daily_summary": (
                datetime.fromtimestamp(self._next_summary, UTC).isoformat()
                if self._next_summary is not None
                else None
            ),
            "counts": dict(self.counts),
            "queue_depth": len(self._inbox),
            "last_error": self.last_error,
        }
