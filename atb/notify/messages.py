"""The text of each notification route: one formatter per route, from the event's fields."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from atb.alerts.model import Notification
from atb.notify.config import RouteConfig
from atb.runtime.context import RunContext


@dataclass(frozen=True)
class Composer:
    """Puts a route's message together for the run: severity, symbol, run identity."""

    ctx: RunContext
    routes: Mapping[str, RouteConfig]

    def note(
        self,
        route: str,
        title: str,
        summary: str,
        details: dict[str, Any],
        severity: str | None = None,
        symbol: str | None = None,
    ) -> Notification:
        cfg = self.routes.get(route)
        now = time.time()
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
            first_seen=now,
            last_seen=now,
        )


def num(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _price(value: Any) -> str:
    v = num(value)
    return "?" if v is None else f"{v:,.8g}" if abs(v) < 1 else f"{v:,.2f}"


def _qty(value: Any) -> str:
    v = num(value)
    return "?" if v is None else f"{v:.8g}"


def money(value: Any) -> str:
    v = num(value)
    return "?" if v is None else f"{v:+,.2f}"


def _symbol(n: Composer, context: dict[str, Any], fields: dict[str, Any]) -> str:
    return str(fields.get("symbol") or context.get("symbol") or n.ctx.symbol)


def _fill_summary(f: dict[str, Any], price: str, reason: Any) -> str:
    """A fill's one-line summary, `<qty> @ <price> (<reason>)`: opens and closes read alike."""
    summary = f"{_qty(f.get('qty'))} @ {price}"
    if reason:
        summary += f" ({reason})"
    return summary


def _trade_opened(n: Composer, f: dict[str, Any], c: dict[str, Any]) -> Notification:
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
    return n.note("trade_opened", f"🟢 Opened {side} {symbol}", summary, details, symbol=symbol)


def _trade_closed(n: Composer, f: dict[str, Any], c: dict[str, Any]) -> Notification:
    side, symbol = str(f.get("side", "?")), _symbol(n, c, f)
    pnl = num(f.get("pnl")) or 0.0
    entry, exit_ = num(f.get("_entry_price")), num(f.get("exit_price"))
    pct = None
    if entry and exit_:
        pct = (exit_ / entry - 1.0) * (1 if side == "long" else -1)
    icon = "💰" if pnl > 0 else "🔻" if pnl < 0 else "⚪"
    result = f"{money(pnl)}" + (f" ({pct:+.2%})" if pct is not None else "")
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
    return n.note("trade_closed", title, summary, details, symbol=symbol)


def _order_rejected(n: Composer, f: dict[str, Any], c: dict[str, Any]) -> Notification:
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
    return n.note("order_rejected", f"⚠️ Order rejected {symbol}", summary, details, symbol=symbol)


def _session_started(n: Composer, f: dict[str, Any], c: dict[str, Any]) -> Notification:
    mode = f.get("mode") or n.ctx.mode
    what = " ".join(str(p) for p in (f.get("strategy"), f.get("symbol"), f.get("timeframe")) if p)
    summary = f"{what} on {f.get('exchange') or 'exchange'}, balance {_price(f.get('balance'))}"
    details = {
        "trading": f.get("trading"),
        "sandbox": f.get("sandbox"),
        "resumed_from": f.get("resumed_from"),
        "open_position": f.get("open_position"),
    }
    return n.note("session_started", f"▶️ Session started ({mode})", summary, details)


def _session_stopped(n: Composer, f: dict[str, Any], c: dict[str, Any]) -> Notification:
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
    return n.note(
        "session_stopped",
        f"{icon} Session {status}",
        summary,
        details,
        severity="error" if failed else None,
    )


Formatter = Callable[[Composer, dict[str, Any], dict[str, Any]], Notification | None]
FORMATTERS: dict[str, Formatter] = {
    "trade_opened": _trade_opened,
    "trade_closed": _trade_closed,
    "order_rejected": _order_rejected,
    "session_started": _session_started,
    "session_stopped": _session_stopped,
}
