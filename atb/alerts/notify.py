"""The `notify` node: trade, rejection, session and daily-summary notifications.

Follow the `notify` config key (conf/notify/default.yaml). Notifications are the second
kind of route next to alerts: every matching event is one message, with no incident
behind it and no de-duplication (two distinct trades are two messages), only a rate
limit per route so a storm (a rejection loop) cannot flood a phone. What the limit holds
back is counted and reported in one "N more ... held back" message once the window
frees up.

It listens to the same event stream as the alert router (`atb.logging.hooks`) and
delivers through the router's channels (`alerts.channels`: the same workers, total
deadline, retries, circuit breaker and /status entries); the trading loop pays one
name check and a deque append per event. Off in backtests (`notify.modes`).

Routes and the events they listen to:

* trade_opened  ← open_position   (side, size, price, stop/take, reason)
* trade_closed  ← close_position  (side, size, exit price, PnL and %, reason)
* order_rejected ← order_rejected (side, size, kind, reason, exchange code)
* session_started ← engine_start, session_stopped ← engine_stop
* daily_summary: at `daily_summary.at` (PnL, trades, win rate, realized drawdown, open
  positions, balance) for the period since the previous summary or the session start.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from loguru import logger
from pydantic import Field, field_validator

from atb.alerts.config import RunMode
from atb.alerts.model import Notification, Severity
from atb.config.base import NodeConfig, StrictModel
from atb.runtime.context import RunContext
from atb.runtime.node import Node
from atb.runtime.probes import PROBES


class RouteConfig(StrictModel):
    enabled: bool = True
    events: list[str] = Field(min_length=1, description="event names this route notifies on")
    rate_limit: int = Field(
        20, ge=0, description="at most this many notifications per `per` seconds (0: no limit)"
    )
    per: float = Field(60.0, gt=0, description="the rate limit's window (s)")
    severity: Severity = "info"


def _route(events: list[str], rate_limit: int, per: float, severity: str = "info") -> Any:
    return lambda: RouteConfig.model_validate(
        {"events": events, "rate_limit": rate_limit, "per": per, "severity": severity}
    )


class RoutesConfig(StrictModel):
    trade_opened: RouteConfig = Field(default_factory=_route(["open_position"], 20, 60))
    trade_closed: RouteConfig = Field(default_factory=_route(["close_position"], 20, 60))
    order_rejected: RouteConfig = Field(
        default_factory=_route(["order_rejected"], 3, 300, "warning")
    )
    session_started: RouteConfig = Field(default_factory=_route(["engine_start"], 5, 3600))
    session_stopped: RouteConfig = Field(default_factory=_route(["engine_stop"], 5, 3600))


class DailySummaryConfig(StrictModel):
    enabled: bool = True
    at: str = Field("00:00", description="time of day, HH:MM or HH:MM:SS")
    timezone: str = Field("UTC", description="IANA zone `at` is in, e.g. Europe/Berlin")

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        if not re.fullmatch(r"([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d)?", value.strip()):
            raise ValueError("must be a time of day, HH:MM or HH:MM:SS (e.g. 20:00)")
        return value.strip()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}' (e.g. UTC, Europe/Berlin)") from None
        return value


def _notify_modes() -> list[RunMode]:
    return ["paper", "live"]


class NotifyConfig(NodeConfig):
    modes: list[RunMode] = Field(
        default_factory=_notify_modes, description="run modes that notify (never backtests)"
    )
    channels: list[str] | None = Field(
        None,
        description="alert channels to notify through, by name ('apprise' means every "
        "apprise.* URL); null: every external channel",
    )
    queue_size: int = Field(10_000, ge=1, description="events held for the notifier")
    stop_timeout: float = Field(2.0, ge=0, description="seconds stop() drains the queue")
    routes: RoutesConfig = Field(default_factory=RoutesConfig)
    daily_summary: DailySummaryConfig = Field(default_factory=DailySummaryConfig)

    @field_validator("modes")
    @classmethod
    def _no_backtest(cls, value: list[str]) -> list[str]:
        if "backtest" in value:
            raise ValueError("backtests never notify (a simulated trade pages nobody)")
        return value


@dataclass
class _Limiter:
    """At most `limit` sends per `per` seconds; the rest are counted, not sent."""

    limit: int
    per: float
    sent: deque[float] = field(default_factory=deque)
    held: int = 0
    held_total: int = 0
    held_since: float | None = None

    def allow(self, now: float) -> bool:
        while self.sent and now - self.sent[0] >= self.per:
            self.sent.popleft()
        if self.limit and len(self.sent) >= self.limit:
            self.held += 1
            self.held_total += 1
            if self.held_since is None:
                self.held_since = now
            return False
        self.sent.append(now)
        return True

    def release_held(self, now: float, force: bool = False) -> int:
        """The count to report once the window has room again (0: nothing to report);
        `force`: now, whatever the window (the session is ending)."""
        if not self.held:
            return 0
        while self.sent and now - self.sent[0] >= self.per:
            self.sent.popleft()
        if self.limit and len(self.sent) >= self.limit and not force:
            return 0
        self.sent.append(now)
        held, self.held, self.held_since = self.held, 0, None
        return held


@dataclass
class _Period:
    """What the daily summary reports: the trades closed since the last one."""

    started: float
    trades: int = 0
    wins: int = 0
    pnl: float = 0.0
    max_drawdown: float = 0.0


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
        self._limiters = {n: _Limiter(r.rate_limit, r.per) for n, r in self.routes.items()}
        self.active = False
        self.reason = ""
        self.channels: list[str] = []
        self._inbox: deque[dict[str, Any]] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._remove_listener: Callable[[], None] | None = None
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
        self._period = _Period(started=time.time())
        self._next_summary: float | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._unregister_probe = PROBES.register("notify", self.state)
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
        self._thread = threading.Thread(target=self._run, name="atb-notify", daemon=True)
        self._thread.start()
        from atb.logging.hooks import add_record_listener

        self._remove_listener = add_record_listener(self._on_record)
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
        if self._remove_listener is not None:
            with contextlib.suppress(Exception):
                self._remove_listener()
            self._remove_listener = None
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            # The last events (engine_stop, the final close) still go out.
            self._thread.join(self.config.stop_timeout)
        if self._unregister_probe is not None:
            self._unregister_probe()
            self._unregister_probe = None

    # -- the emitting thread ----------------------------------------------------------------

    def _on_record(self, record: dict[str, Any]) -> None:
        """Runs on the trading loop: a name check and an append, nothing else."""
        if record.get("name") not in self._by_event:
            return
        if len(self._inbox) >= self.config.queue_size:
            self.counts["events_dropped"] += 1
            return
        self._inbox.append(record)
        self._wake.set()

    # -- the notifier thread ----------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            stopping = self._stopping.is_set()
            try:
                while self._inbox:
                    self._handle(self._inbox.popleft())
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
        note = FORMATTERS[route](self, fields, context)
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
                    self._note(
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
            self._balance = _num(fields.get("balance"))
            self._equity = self._peak = self._balance
        elif name == "open_position":
            self._open[fields.get("position_no")] = fields
        elif name == "close_position":
            entry = self._open.pop(fields.get("position_no"), None)
            if entry is not None:
                fields["_entry_price"] = entry.get("entry_price")
            pnl = _num(fields.get("pnl")) or 0.0
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
            self._balance = _num(fields.get("balance"))

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
        self._period = _Period(started=now, max_drawdown=0.0)
        win_rate = f"{period.wins / period.trades:.0%}" if period.trades else "n/a"
        since = datetime.fromtimestamp(period.started, UTC).strftime("%Y-%m-%d %H:%M UTC")
        details = {
            "pnl": _money(period.pnl),
            "trades": period.trades,
            "win_rate": win_rate,
            "max_drawdown": f"{period.max_drawdown:.2%} (realized)",
            "open_positions": len(self._open),
            "equity": _money(self._equity) if self._equity is not None else None,
            "since": since,
        }
        sign = "📈" if period.pnl > 0 else "📉" if period.pnl < 0 else "📊"
        summary = (
            f"PnL {_money(period.pnl)}, {period.trades} trade"
            f"{'s' if period.trades != 1 else ''}, win rate {win_rate}, "
            f"{len(self._open)} open"
        )
        note = self._note(
            "daily_summary", f"{sign} Daily summary {self.ctx.symbol}", summary, details
        )
        self.counts["notified"] += 1
        self.per_route["daily_summary"] = self.per_route.get("daily_summary", 0) + 1
        self.router.send(note, channels=self.channels, record=False)

    # -- messages -------------------------------------------------------------------------

    def _note(
        self,
        route: str,
        title: str,
        summary: str,
        details: dict[str, Any],
        severity: str | None = None,
        symbol: str | None = None,
    ) -> Notification:
        cfg = self.routes.get(route)
        return Notification(
            rule=route,
            severity=severity or (cfg.severity if cfg else "info"),
            status="notify",
            summary=summary,
            details={k: v for k, v in details.items() if v is not None},
            title_text=title,
            symbol=symbol or self.ctx.symbol,
            run_id=self.ctx.run_id,
            mode=self.ctx.mode,
            strategy=self.ctx.strategy,
            first_seen=time.time(),
            last_seen=time.time(),
        )

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


# -- formatters: one per route ----------------------------------------------------------


def _num(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _price(value: Any) -> str:
    v = _num(value)
    return "?" if v is None else f"{v:,.8g}" if abs(v) < 1 else f"{v:,.2f}"


def _qty(value: Any) -> str:
    v = _num(value)
    return "?" if v is None else f"{v:.8g}"


def _money(value: Any) -> str:
    v = _num(value)
    return "?" if v is None else f"{v:+,.2f}"


def _symbol(n: Notifier, context: dict[str, Any], fields: dict[str, Any]) -> str:
    return str(fields.get("symbol") or context.get("symbol") or n.ctx.symbol)


def _fill_summary(f: dict[str, Any], price: str, reason: Any) -> str:
    """A fill's one-line summary, `<qty> @ <price> (<reason>)`: opens and closes read alike."""
    summary = f"{_qty(f.get('qty'))} @ {price}"
    if reason:
        summary += f" ({reason})"
    return summary


def _trade_opened(n: Notifier, f: dict[str, Any], c: dict[str, Any]) -> Notification:
    side, symbol = str(f.get("side", "?")), _symbol(n, c, f)
    summary = _fill_summary(f, _price(f.get("entry_price")), f.get("reason"))
    details = {
        "side": side,
        "size": _qty(f.get("qty")),
        "price": _price(f.get("entry_price")),
        "stop": _price(f["stop_price"]) if f.get("stop_price") else None,
        "take_profit": _price(f["take_price"]) if f.get("take_price") else None,
        "reason": f.get("reason"),
        "position": f.get("position_no"),
    }
    return n._note("trade_opened", f"🟢 Opened {side} {symbol}", summary, details, symbol=symbol)


def _trade_closed(n: Notifier, f: dict[str, Any], c: dict[str, Any]) -> Notification:
    side, symbol = str(f.get("side", "?")), _symbol(n, c, f)
    pnl = _num(f.get("pnl")) or 0.0
    entry, exit_ = _num(f.get("_entry_price")), _num(f.get("exit_price"))
    pct = None
    if entry and exit_:
        pct = (exit_ / entry - 1.0) * (1 if side == "long" else -1)
    icon = "💰" if pnl > 0 else "🔻" if pnl < 0 else "⚪"
    result = f"{_money(pnl)}" + (f" ({pct:+.2%})" if pct is not None else "")
    summary = _fill_summary(f, _price(exit_), f.get("exit_reason"))
    details = {
        "side": side,
        "size": _qty(f.get("qty")),
        "entry_price": _price(entry) if entry else None,
        "exit_price": _price(exit_),
        "pnl": result,
        "reason": f.get("exit_reason"),
        "position": f.get("position_no"),
    }
    title = f"{icon} Closed {side} {symbol}: {result}"
    return n._note("trade_closed", title, summary, details, symbol=symbol)


def _order_rejected(n: Notifier, f: dict[str, Any], c: dict[str, Any]) -> Notification:
    symbol = _symbol(n, c, f)
    # Live rejections carry the exchange's reason; paper ones put it in `note` (their
    # `reason` is why the order was placed).
    reason = (f.get("note") if f.get("source") is None else None) or f.get("reason")
    reason = reason or "no reason given"
    summary = f"{f.get('side', '?')} {_qty(f.get('qty'))} ({f.get('kind', 'order')}): {reason}"
    details = {
        "side": f.get("side"),
        "size": _qty(f.get("qty")),
        "kind": f.get("kind"),
        "reason": reason,
        "code": f.get("code"),
        "source": f.get("source"),
        "check": "balance, minimum order size and the API key's trading permission",
    }
    return n._note("order_rejected", f"⚠️ Order rejected {symbol}", summary, details, symbol=symbol)


def _session_started(n: Notifier, f: dict[str, Any], c: dict[str, Any]) -> Notification:
    mode = f.get("mode") or n.ctx.mode
    what = " ".join(str(p) for p in (f.get("strategy"), f.get("symbol"), f.get("timeframe")) if p)
    summary = f"{what} on {f.get('exchange') or 'exchange'}, balance {_price(f.get('balance'))}"
    details = {
        "trading": f.get("trading"),
        "sandbox": f.get("sandbox"),
        "resumed_from": f.get("resumed_from"),
        "open_position": f.get("open_position"),
    }
    return n._note("session_started", f"▶️ Session started ({mode})", summary, details)


def _session_stopped(n: Notifier, f: dict[str, Any], c: dict[str, Any]) -> Notification:
    status = str(f.get("status") or "stopped")
    failed = status == "failed"
    trades = f.get("trades", 0)
    summary = (
        f"{status}: {trades} trade{'' if trades == 1 else 's'}, "
        f"balance {_price(f.get('balance'))}, "
        f"equity {_price(f.get('equity'))}"
    )
    details = {
        "iterations": f.get("iterations"),
        "open_position": f.get("open_position"),
        "error": f.get("error"),
        "check": "the logs around the error; /status" if failed else None,
    }
    icon = "🛑" if failed else "⏹"
    return n._note(
        "session_stopped",
        f"{icon} Session {status}",
        summary,
        details,
        severity="error" if failed else None,
    )


Formatter = Callable[[Notifier, dict[str, Any], dict[str, Any]], Notification | None]
FORMATTERS: dict[str, Formatter] = {
    "trade_opened": _trade_opened,
    "trade_closed": _trade_closed,
    "order_rejected": _order_rejected,
    "session_started": _session_started,
    "session_stopped": _session_stopped,
}
