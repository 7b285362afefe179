"""The `exchange` node for any ccxt exchange (`exchange=binance`, `exchange.id=kraken`, ...).

Market data for paper and live runs, and real orders for live runs. ccxt is imported in
`start()`, so validating a config or printing `--help` never pays for it.

Resilience lives here, once, for every call the engine makes:
- NetworkError and its kin (RequestTimeout, ExchangeNotAvailable, DDoSProtection,
  RateLimitExceeded) and malformed payloads are retried with exponential backoff and
  jitter, honouring the server's Retry-After; each retry is a `exchange_retry` data event.
  When the retries run out the call raises `ExchangeUnavailable`.
- Any other ccxt error on an order (InvalidOrder, InsufficientFunds, BadRequest, ...) is a
  rejection: `OrderRejected` with the exchange's message and code, never retried.
- Placing an order is not idempotent, so a network error there is never answered with a
  blind resend: the order is looked up by its client order id first and only re-sent
  (with the same id) when the exchange has no record of it.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pandas as pd
from pydantic import SecretStr

from atb.config.base import NodeConfig
from atb.exchange.base import (
    ExchangeUnavailable,
    MalformedResponse,
    OrderRejected,
    OrderResult,
    validate_candles,
)
from atb.exchange.ccxt_config import CcxtExchangeConfig
from atb.exchange.urls import fold_binance_spot_errors, rebase_api_urls
from atb.health import metrics as _metrics
from atb.logging.events import log_data_event, log_engine_event, log_order_event
from atb.runtime.context import RunContext
from atb.runtime.node import Node

T = TypeVar("T")


def _retry_after(client: Any) -> float | None:
    headers = getattr(client, "last_response_headers", None) or {}
    for key, value in headers.items():
        if str(key).lower() == "retry-after":
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None


def _error_code(client: Any, exc: BaseException) -> tuple[str, str | None]:
    """(reason, code) from the exchange's JSON error body when there is one."""
    body = getattr(client, "last_http_response", None)
    message = str(exc)
    prefix = f"{getattr(client, 'id', '')} "
    if message.startswith(prefix):
        message = message[len(prefix) :]
    for text in (body, message):
        if not isinstance(text, str) or "{" not in text:
            continue
        try:
            payload = json.loads(text[text.index("{") :])
        except ValueError:
            continue
        if isinstance(payload, dict):
            msg = payload.get("msg") or payload.get("message") or payload.get("error")
            code = payload.get("code")
            if msg:
                return str(msg), None if code is None else str(code)
    return message, None


class CcxtExchange(Node[CcxtExchangeConfig]):
    """A ccxt client for the run's symbol, with retries; see the module docstring."""

    def __init__(self, config: NodeConfig, ctx: RunContext, **needs: Any) -> None:
        super().__init__(config, ctx)
        self.client: Any = None
        self.market: dict[str, Any] = {}
        self.symbol = ctx.symbol  # resolved to ccxt's unified symbol in start()
        self.timeframe = ctx.timeframe
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {
            "last_error": None, "last_error_kind": None, "last_error_at": None,
            "consecutive_failures": 0, "retries": 0, "calls": 0,
        }  # fmt: skip
        self.exhausted = False  # a real exchange always has a next candle

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        import ccxt

        cfg = self.config
        cls = getattr(ccxt, cfg.id)
        params: dict[str, Any] = {
            "enableRateLimit": cfg.rate_limit,
            "timeout": int(cfg.timeout * 1000),
            "options": dict(cfg.options),
        }
        for name, key in (
            ("api_key", "apiKey"),
            ("api_secret", "secret"),
            ("password", "password"),
        ):
            value: SecretStr | None = getattr(cfg, name)
            if value is not None and value.get_secret_value():
                params[key] = value.get_secret_value()
        client = cls(params)
        if cfg.sandbox:
            client.set_sandbox_mode(True)
        if cfg.base_url:
            rebase_api_urls(client, cfg.base_url)
        elif cfg.sandbox:
            fold_binance_spot_errors(client)
        self.client = client
        try:
            self._load_markets()
        except ExchangeUnavailable as exc:
            if cfg.trading:
                raise
            # Paper trading can wait for the network: the loop retries each poll, the
            # health server reports the exchange unreachable, instead of a dead process.
            log_engine_event(
                "exchange_unreachable",
                level="WARNING",
                exchange=cfg.id,
                url=self.api_url,
                error=str(exc)[:300],
                note="starting anyway; markets load on the first successful poll",
            )

    def _load_markets(self) -> None:
        cfg, client = self.config, self.client
        markets = self.call("load_markets", client.load_markets)
        self.market = self._resolve_market(markets, self.ctx.symbol)
        self.symbol = self.market["symbol"]
        if self.timeframe not in (getattr(client, "timeframes", None) or {self.timeframe: 1}):
            raise ValueError(
                f"{cfg.id} has no '{self.timeframe}' candles (has {', '.join(client.timeframes)})"
            )
        log_engine_event(
            "exchange_connected",
            exchange=cfg.id,
            symbol=self.symbol,
            sandbox=cfg.sandbox,
            url=self.api_url,
            trading=cfg.trading,
        )

    def stop(self) -> None:
        session = getattr(self.client, "session", None)
        if session is not None:
            with contextlib.suppress(Exception):  # must never fail the others' shutdown
                session.close()

    @staticmethod
    def _resolve_market(markets: dict[str, Any], symbol: str) -> dict[str, Any]:
        """`BTC/USDT` or the exchange's own id (`BTCUSDT`) -> the spot market."""
        if symbol in markets:
            return dict(markets[symbol])
        wanted = symbol.replace("/", "").replace("-", "").upper()
        for market in markets.values():
            if market.get("spot", True) and str(market.get("id", "")).upper() == wanted:
                return dict(market)
        for market in markets.values():
            joined = f"{market.get('base', '')}{market.get('quote', '')}".upper()
            if market.get("spot", True) and joined == wanted:
                return dict(market)
        raise ValueError(f"symbol '{symbol}' is not a market of this exchange")

    # -- identity and state -------------------------------------------------------------
    @property
    def api_url(self) -> str | None:
        if self.config.base_url:
            return self.config.base_url
        api = (self.client.urls.get("api") if self.client is not None else None) or {}
        if isinstance(api, str):
            return api
        return api.get("public") or next((u for u in api.values() if isinstance(u, str)), None)

    def describe(self) -> dict[str, Any]:
        return {
            "exchange": self.config.id,
            "url": self.api_url,
            "sandbox": self.config.sandbox,
            "symbol": self.symbol,
            "trading": self.config.trading,
        }

    def state(self) -> dict[str, Any]:
        with self._lock:
            return {**self.describe(), **self._state}

    def now_ms(self) -> int:
        # ccxt's clock already carries its time-difference adjustment when enabled.
        if self.client is not None:
            return int(self.client.milliseconds())
        return int(time.time() * 1000)

    # -- the retry wrapper --------------------------------------------------------------
    def call(
        self, name: str, fn: Callable[..., T], *args: Any, retries: bool = True, **kwargs: Any
    ) -> T:
        """`fn(*args, **kwargs)` with backoff on transient errors; see the module docstring."""
        import ccxt

        rs = self.config.retry
        delay = rs.initial
        attempt = 0
        while True:
            with self._lock:
                self._state["calls"] += 1
            started = time.perf_counter()
            try:
                result = fn(*args, **kwargs)
                self._observe(name, "ok", started)
                with self._lock:
                    self._state["consecutive_failures"] = 0
                return result
            except (ccxt.NetworkError, MalformedResponse) as exc:
                kind = type(exc).__name__
                self._observe(name, kind, started)
                self._failed(kind, exc)
                attempt += 1
                if not retries or attempt > rs.attempts or self.ctx.stopping:
                    raise ExchangeUnavailable(name, kind, str(exc)) from exc
                wait = delay * (1 + rs.jitter * (2 * random.random() - 1))
                server_wait = (
                    _retry_after(self.client)
                    if isinstance(exc, ccxt.DDoSProtection | ccxt.RateLimitExceeded)
                    else None
                )
                if server_wait is not None:
                    wait = max(wait, min(server_wait, rs.max_retry_after))
                wait = min(wait, max(rs.max, server_wait or 0.0))
                log_data_event(
                    "exchange_retry",
                    level="WARNING",
                    call=name,
                    error_kind=kind,
                    error=str(exc)[:300],
                    attempt=attempt,
                    of=rs.attempts,
                    wait_s=round(wait, 3),
                    retry_after=server_wait,
                    exchange=self.config.id,
                )
                with self._lock:
                    self._state["retries"] += 1
                self.ctx.stop_event.wait(wait)
                delay = min(delay * rs.factor, rs.max)

    def _observe(self, endpoint: str, outcome: str, started: float) -> None:
        _metrics.observe_exchange_request(endpoint, outcome, time.perf_counter() - started)

    def _failed(self, kind: str, exc: BaseException) -> None:
        with self._lock:
            self._state.update(
                last_error=str(exc)[:500],
                last_error_kind=kind,
                last_error_at=time.time(),
                consecutive_failures=self._state["consecutive_failures"] + 1,
            )
        _metrics.record_exchange_error(kind)

    # -- market data --------------------------------------------------------------------
    def fetch_candles(self, limit: int) -> pd.DataFrame:
        from atb.data.loader import timeframe_delta

        if not self.market:
            self._load_markets()

        delta = timeframe_delta(self.timeframe)
        tf_ms = int(delta.total_seconds() * 1000) if delta is not None else 0

        def fetch() -> pd.DataFrame:
            # One extra row: the exchange's last row is usually the candle still forming.
            rows = self.client.fetch_ohlcv(self.symbol, self.timeframe, limit=limit + 1)
            frame = validate_candles(list(rows or []), tf_ms)
            if tf_ms and len(frame):
                now = self.now_ms()
                opens = frame.index.asi8 // 1_000_000  # type: ignore[attr-defined]  # pandas-stubs lacks asi8
                frame = frame[opens + tf_ms <= now]
            return frame.iloc[-limit:]

        return self.call("fetch_ohlcv", fetch)

    # -- orders (mode=live) ---------------------------------------------------------------
    def last_price(self) -> float:
        def fetch() -> float:
            ticker = self.client.fetch_ticker(self.symbol)
            price = ticker.get("last") or ticker.get("close")
            if not isinstance(price, int | float) or not price > 0:
                raise MalformedResponse(f"ticker has no usable last price: {price!r}")
            return float(price)

        return self.call("fetch_ticker", fetch)

    def balances(self) -> tuple[float, float]:
        base, quote = self.market["base"], self.market["quote"]

        def fetch() -> tuple[float, float]:
            balance = self.client.fetch_balance()
            b = (balance.get(base) or {}).get("total") or 0.0
            q = (balance.get(quote) or {}).get("free") or 0.0
            if not isinstance(b, int | float) or not isinstance(q, int | float):
                raise MalformedResponse("balance without numbers")
            return float(b), float(q)

        return self.call("fetch_balance", fetch)

    def amount_to_precision(self, qty: float) -> float:
        import ccxt

        try:
            return float(self.client.amount_to_precision(self.symbol, qty))
        except (ccxt.InvalidOrder, ccxt.ArgumentsRequired):
            return 0.0  # below the exchange's minimum: nothing can be ordered

    def min_notional(self) -> float:
        limits = self.market.get("limits") or {}
        value = (limits.get("cost") or {}).get("min")
        return float(value) if isinstance(value, int | float) else 0.0

    def market_order(self, side: int, qty: float, client_order_id: str) -> OrderResult:
        """Place a market order; OrderRejected or ExchangeUnavailable on failure."""
        import ccxt

        side_name = "buy" if side > 0 else "sell"
        params = {"clientOrderId": client_order_id}
        if self.config.id.startswith("binance"):
            # FULL responses carry the fills, hence the real fee of this order.
            params["newOrderRespType"] = "FULL"
        log_order_event(
            "order_submitted",
            client_order_id=client_order_id,
            side=side_name,
            qty=qty,
            symbol=self.symbol,
            exchange=self.config.id,
        )
        for attempt in range(2):
            started = time.perf_counter()
            try:
                raw = self.client.create_order(
                    self.symbol, "market", side_name, qty, None, dict(params)
                )
                self._observe("create_order", "ok", started)
                return self._parse_order(raw, side, client_order_id)
            except ccxt.NetworkError as exc:
                self._observe("create_order", type(exc).__name__, started)
                self._failed(type(exc).__name__, exc)
                # The order may have reached the exchange before the connection failed.
                found = self.find_order(client_order_id)
                if found is not None:
                    return found
                if attempt == 1:
                    raise ExchangeUnavailable("create_order", type(exc).__name__, str(exc)) from exc
                log_data_event(
                    "exchange_retry",
                    level="WARNING",
                    call="create_order",
                    error_kind=type(exc).__name__,
                    error=str(exc)[:300],
                    attempt=1,
                    of=1,
                    client_order_id=client_order_id,
                    note="not on the exchange: re-sending with the same client id",
                )
            except ccxt.BaseError as exc:
                self._observe("create_order", type(exc).__name__, started)
                reason, code = _error_code(self.client, exc)
                raise OrderRejected(reason, code, type(exc).__name__) from exc
        raise AssertionError("unreachable")

    def find_order(self, client_order_id: str) -> OrderResult | None:
        """The order with this client id, or None when the exchange never saw it."""
        import ccxt

        def fetch() -> OrderResult | None:
            try:
                raw = self.client.fetch_order(None, self.symbol, {"clientOrderId": client_order_id})
            except ccxt.OrderNotFound:
                return None
            side = 1 if raw.get("side") == "buy" else -1
            return self._parse_order(raw, side, client_order_id, fetch_fees=True)

        return self.call("fetch_order", fetch)

    def _parse_order(
        self, raw: dict[str, Any], side: int, client_order_id: str, fetch_fees: bool = False
    ) -> OrderResult:
        filled = raw.get("filled")
        price = raw.get("average") or raw.get("price")
        if not isinstance(filled, int | float) or filled < 0:
            raise MalformedResponse(f"order without a filled quantity: {filled!r}")
        status = {
            "closed": "filled",
            "open": "open",
            "canceled": "cancelled",
            "cancelled": "cancelled",
            "expired": "cancelled",
            "rejected": "cancelled",
        }.get(str(raw.get("status")), "open")
        if filled > 0 and (not isinstance(price, int | float) or price <= 0):
            cost = raw.get("cost")
            if isinstance(cost, int | float) and cost > 0:
                price = cost / filled
            else:
                raise MalformedResponse(f"filled order without a price: {price!r}")
        fees = list(raw.get("fees") or ([raw["fee"]] if raw.get("fee") else []))
        if fetch_fees and not fees and filled and raw.get("id"):
            try:
                trades = self.client.fetch_my_trades(
                    self.symbol, None, None, {"orderId": raw["id"]}
                )
                fees = [t["fee"] for t in trades if t.get("fee")]
            except Exception:  # the fee is then estimated by the caller's fee rate
                fees = []
        fee_base = fee_quote = 0.0
        base, quote = self.market.get("base"), self.market.get("quote")
        for fee in fees:
            cost = fee.get("cost") if isinstance(fee, dict) else None
            if not isinstance(cost, int | float):
                continue
            if fee.get("currency") == base:
                fee_base += float(cost)
            elif fee.get("currency") == quote or fee.get("currency") is None:
                fee_quote += float(cost)
            # Fees in a third asset (BNB) do not move this market's balances.
        return OrderResult(
            client_order_id=str(raw.get("clientOrderId") or client_order_id),
            exchange_order_id=None if raw.get("id") is None else str(raw["id"]),
            status=status,
            side=side,
            qty=float(filled),
            price=float(price or 0.0),
            fee_base=fee_base,
            fee_quote=fee_quote,
            timestamp_ms=raw.get("timestamp") if isinstance(raw.get("timestamp"), int) else None,
            raw={k: raw.get(k) for k in ("id", "status", "filled", "average", "cost")},
        )
