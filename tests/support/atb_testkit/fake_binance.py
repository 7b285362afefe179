"""A small Binance-compatible spot REST exchange for tests and benchmarks.

Real ``ccxt.binance`` talks to it over HTTP (see :func:`ccxt_binance_for`), so paper/live loops,
alerts and health checks are exercised through the same client code as production, including
request signing and ccxt's error mapping.

Market model, kept deliberately simple:

* A *clock* walks over a fixed candle list. ``cursor`` candles are revealed (closed); klines never
  show anything beyond the cursor, so there is no look-ahead. :meth:`FakeBinance.advance` reveals
  more. With ``forming_candle=True`` klines also return the currently forming candle like Binance
  does (a flat candle at the current price with zero volume); the default is closed candles only,
  which keeps backtest/paper comparisons exact.
* The *current price* is the close of the last revealed candle, unless :meth:`set_price`
  overrides it (until the next ``advance``). Bid = ask = current price.
* MARKET orders fill immediately and completely at the current price. LIMIT orders that are
  marketable fill immediately at the current price (taker); others rest, with funds locked, and
  fill completely at their limit price when a revealed candle's low/high (or a ``set_price``)
  crosses it. There are no partial fills.
* Commission is ``SymbolRules.commission`` (0.1%) of the received asset, as Binance charges
  without BNB: base for buys, quote for sells.
* Server time, order and trade timestamps are wall-clock milliseconds, because ccxt signs with
  wall-clock ``timestamp`` and checks ``since`` against its own clock. Candle timestamps are
  whatever the data says (the synthetic default starts 2024-01-01 UTC).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import dataclasses
import hashlib
import hmac
import json
import math
import random
import threading
import time
from asyncio import Future
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import tornado.httpserver
import tornado.netutil
import tornado.web

from atb_testkit.faults import FaultScript

if TYPE_CHECKING:
    import ccxt
    import pandas as pd

__all__ = [
    "Balance",
    "BinanceError",
    "Candle",
    "FakeBinance",
    "Order",
    "RequestRecord",
    "SymbolRules",
    "Trade",
    "ccxt_binance_for",
    "synthetic_candles",
]

INTERVAL_MS: dict[str, int] = {
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}

DEFAULT_API_KEY = "fake-binance-api-key"
DEFAULT_API_SECRET = "fake-binance-api-secret"
_SYNTHETIC_START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z: in the past, so ccxt's clamps pass
_MAX_RECV_WINDOW = 60_000
_E8 = Decimal("0.00000001")

_REQUEST_FAULTS = frozenset({"http", "timeout", "malformed_json", "disconnect"})
_ORDER_FAULTS = frozenset({"reject_order"})


@dataclass(frozen=True, slots=True)
class Candle:
    """One OHLCV bar; ``timestamp`` is the open time in epoch milliseconds."""

    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class SymbolRules:
    """Exchange filters for the single symbol; defaults mirror Binance's BTCUSDT."""

    tick_size: Decimal = Decimal("0.01")
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    step_size: Decimal = Decimal("0.00001")
    min_qty: Decimal = Decimal("0.00001")
    max_qty: Decimal = Decimal("9000")
    min_notional: Decimal = Decimal("5")
    max_notional: Decimal = Decimal("9000000")
    commission: Decimal = Decimal("0.001")


@dataclass(frozen=True, slots=True)
class Order:
    order_id: int
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str | None
    price: Decimal
    orig_qty: Decimal
    executed_qty: Decimal
    cumulative_quote_qty: Decimal
    status: str
    time: int
    update_time: int
    orig_quote_order_qty: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class Trade:
    trade_id: int
    order_id: int
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_maker: bool


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What the server saw. ``params`` never holds the signature, key or secret."""

    time: float
    method: str
    path: str
    params: dict[str, str]
    status: int
    fault: str | None = None


@dataclass(frozen=True, slots=True)
class Balance:
    free: Decimal
    locked: Decimal


class BinanceError(Exception):
    """A Binance-style ``{"code": ..., "msg": ...}`` error response."""

    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(f"{status} {code} {msg}")
        self.code = code
        self.msg = msg
        self.status = status


def _mandatory(name: str) -> BinanceError:
    return BinanceError(
        -1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed."
    )


def _filter_failure(name: str) -> BinanceError:
    return BinanceError(-1013, f"Filter failure: {name}")


def _fmt(value: Decimal | float) -> str:
    return f"{value:.8f}"


def _now_ms() -> int:
    return int(time.time() * 1000)


def synthetic_candles(
    n: int = 500,
    *,
    interval: str = "1h",
    start_ms: int = _SYNTHETIC_START_MS,
    start_price: float = 30_000.0,
    seed: int = 7,
) -> list[Candle]:
    """Deterministic geometric random walk, prices rounded to cents like BTCUSDT ticks."""
    rng = random.Random(seed)
    step = INTERVAL_MS[interval]
    candles: list[Candle] = []
    close = start_price
    for i in range(n):
        open_ = close
        close = round(open_ * math.exp(rng.gauss(0.0, 0.006)), 2)
        high = round(max(open_, close) * (1 + abs(rng.gauss(0.0, 0.002))), 2)
        low = round(min(open_, close) * (1 - abs(rng.gauss(0.0, 0.002))), 2)
        volume = round(50 + abs(rng.gauss(0.0, 1.0)) * 200, 5)
        candles.append(Candle(start_ms + i * step, open_, high, low, close, volume))
    return candles


def _candles_from_frame(frame: pd.DataFrame) -> list[Candle]:
    import pandas as pd

    data = frame.reset_index() if "timestamp" not in frame.columns else frame
    if "timestamp" not in data.columns:
        raise ValueError("candle frame needs a 'timestamp' column or index")
    stamps = data["timestamp"]
    if pd.api.types.is_integer_dtype(stamps):
        millis = [int(v) for v in stamps]
    else:
        # Unit-agnostic: pandas 3 may store datetimes as s/ms/us, so never assume ns.
        parsed = pd.to_datetime(stamps, utc=True)
        epoch = pd.Timestamp(0, tz="UTC")
        millis = [int((ts - epoch) // pd.Timedelta(milliseconds=1)) for ts in parsed]
    cols = [data[c].astype(float).tolist() for c in ("open", "high", "low", "close", "volume")]
    return [Candle(ms, *row) for ms, *row in zip(millis, *cols, strict=True)]


class FakeBinance:
    """Binance spot REST server for a single symbol, on its own IOLoop thread."""

    # Mutable market state, (re)initialised by _reset_state() and guarded by _lock.
    _cursor: int
    _frozen_at: int | None
    _price_override: Decimal | None
    _free: dict[str, Decimal]
    _locked: dict[str, Decimal]
    _orders: dict[int, Order]
    _trades: list[Trade]
    _log: list[RequestRecord]
    _next_order_id: int
    _next_trade_id: int

    def __init__(
        self,
        candles: Sequence[Candle] | pd.DataFrame | None = None,
        symbol: str = "BTCUSDT",
        base: str = "BTC",
        quote: str = "USDT",
        api_key: str | None = None,
        api_secret: str | None = None,
        balances: Mapping[str, float] | None = None,
        interval: str = "1h",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        warmup: int = 100,
        forming_candle: bool = False,
        rules: SymbolRules | None = None,
        klines_max_limit: int = 1000,
    ) -> None:
        if interval not in INTERVAL_MS:
            raise ValueError(f"unsupported interval {interval!r}")
        if candles is None:
            loaded = synthetic_candles(interval=interval)
        elif isinstance(candles, Sequence):
            loaded = list(candles)
        else:
            loaded = _candles_from_frame(candles)
        if not loaded:
            raise ValueError("need at least one candle")
        self.symbol = symbol
        self.base = base
        self.quote = quote
        self.interval = interval
        self.api_key = api_key if api_key is not None else DEFAULT_API_KEY
        self.api_secret = api_secret if api_secret is not None else DEFAULT_API_SECRET
        self.rules = rules or SymbolRules()
        self.forming_candle = forming_candle
        self.faults = FaultScript()
        self.faults.subscribe(self._on_switch)

        self._candles: tuple[Candle, ...] = tuple(sorted(loaded, key=lambda c: c.timestamp))
        self._stamps: list[int] = [c.timestamp for c in self._candles]
        # Binance caps a klines page at 1000 candles; a smaller cap makes paging testable
        # on short histories.
        self.klines_max_limit = klines_max_limit
        self.klines_served = 0
        self._klines_fault: tuple[int, BinanceError] | None = None
        self._interval_ms = INTERVAL_MS[interval]
        self._warmup = max(1, min(warmup, len(self._candles)))
        initial = {base: 0.0, quote: 10_000.0} if balances is None else dict(balances)
        self._initial_balances = {a: Decimal(str(v)) for a, v in initial.items()}
        self._initial_balances.setdefault(base, Decimal(0))
        self._initial_balances.setdefault(quote, Decimal(0))

        # Handlers (IOLoop thread) and test helpers (caller thread) share this state.
        self._lock = threading.RLock()
        self._reset_state()

        self._host = host
        self._requested_port = port
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        self._startup_error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("FakeBinance already started")
        ready = threading.Event()
        self._startup_error = None
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"fake-binance-{self.symbol}", daemon=True
        )
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("FakeBinance did not start listening within 10 s")
        if self._startup_error is not None:
            self._thread.join(5)
            self._thread = None
            raise self._startup_error

    def stop(self) -> None:
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> FakeBinance:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("FakeBinance is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def _run(self, ready: threading.Event) -> None:
        try:
            asyncio.run(self._serve(ready))
        except BaseException as exc:  # surface bind errors to start() instead of losing them
            self._startup_error = exc
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        sockets = tornado.netutil.bind_sockets(self._port or self._requested_port, self._host)
        self._port = sockets[0].getsockname()[1]
        if not self.faults.offline:
            self._http = self._make_http_server()
            self._http.add_sockets(sockets)
        else:
            for sock in sockets:
                sock.close()
        ready.set()
        await self._stopping.wait()
        await self._go_offline()

    def _make_http_server(self) -> tornado.httpserver.HTTPServer:
        app = tornado.web.Application(
            [(r"/.*", _BinanceHandler, {"server": self})],
            # Access logs would drown test output; the request log below is the record.
            log_function=lambda _handler: None,
        )
        return tornado.httpserver.HTTPServer(app, xheaders=False)

    async def _go_offline(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            http.stop()
            await http.close_all_connections()

    async def _go_online(self) -> None:
        if self._http is not None:
            return
        sockets = tornado.netutil.bind_sockets(self.port, self._host)
        self._http = self._make_http_server()
        self._http.add_sockets(sockets)

    def _on_switch(self, name: str, value: bool) -> None:
        if name == "frozen":
            with self._lock:
                self._frozen_at = self._cursor if value else None
            return
        loop = self._loop
        if loop is None or self._thread is None:
            return  # not running: _serve honours the flag when it starts
        coro = self._go_offline() if value else self._go_online()
        future = asyncio.run_coroutine_threadsafe(coro, loop)
        if threading.current_thread() is not self._thread:
            future.result(10)

    def _is_stopping(self) -> bool:
        return self._stopping is not None and self._stopping.is_set()

    async def _sleep(self, seconds: float) -> None:
        # Wakes early on stop() so a pending "timeout" fault never delays shutdown.
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    # -- test helpers: clock, prices, state --------------------------------------------------

    def _reset_state(self) -> None:
        with self._lock:
            self._cursor = self._warmup
            self._frozen_at = self._cursor if self.faults.candles_frozen else None
            self._price_override = None
            self._free = dict(self._initial_balances)
            self._locked = {asset: Decimal(0) for asset in self._free}
            self._orders = {}
            self._trades = []
            self._log = []
            self._next_order_id = 1
            self._next_trade_id = 1

    def reset(self) -> None:
        """Back to the constructor state: cursor, balances, orders, trades, log and faults."""
        self.faults.clear()
        self._reset_state()

    @property
    def candles(self) -> tuple[Candle, ...]:
        return self._candles

    @property
    def cursor(self) -> int:
        """Number of revealed (closed) candles."""
        with self._lock:
            return self._cursor

    @property
    def current_candle(self) -> Candle:
        with self._lock:
            return self._candles[self._cursor - 1]

    @property
    def price(self) -> Decimal:
        with self._lock:
            return self._current_price()

    def advance(self, n: int = 1) -> list[Candle]:
        """Reveal up to ``n`` more candles, filling resting limit orders they cross."""
        revealed: list[Candle] = []
        with self._lock:
            for _ in range(n):
                if self._cursor >= len(self._candles):
                    break
                candle = self._candles[self._cursor]
                self._cursor += 1
                self._price_override = None
                revealed.append(candle)
                self._match_resting(Decimal(str(candle.low)), Decimal(str(candle.high)))
        return revealed

    def set_price(self, price: float | Decimal | str) -> None:
        """Override the current price until the next advance(); crosses resting orders."""
        value = self._to_tick(Decimal(str(price)))
        with self._lock:
            self._price_override = value
            self._match_resting(value, value)

    def set_balance(self, asset: str, free: float | Decimal | str) -> None:
        with self._lock:
            self._free[asset] = Decimal(str(free))
            self._locked.setdefault(asset, Decimal(0))

    def balances(self) -> dict[str, Balance]:
        with self._lock:
            return {a: Balance(self._free[a], self._locked.get(a, Decimal(0))) for a in self._free}

    @property
    def orders(self) -> list[Order]:
        with self._lock:
            return list(self._orders.values())

    @property
    def open_orders(self) -> list[Order]:
        with self._lock:
            return [o for o in self._orders.values() if o.status == "NEW"]

    @property
    def trades(self) -> list[Trade]:
        with self._lock:
            return list(self._trades)

    @property
    def request_log(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._log)

    def clear_request_log(self) -> None:
        with self._lock:
            self._log = []

    def requests_to(self, path: str) -> list[RequestRecord]:
        return [r for r in self.request_log if r.path == path]

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)

    # -- market model ------------------------------------------------------------------------

    def _to_tick(self, value: Decimal) -> Decimal:
        tick = self.rules.tick_size
        return (value / tick).to_integral_value(ROUND_HALF_EVEN) * tick

    def _current_price(self) -> Decimal:
        if self._price_override is not None:
            return self._price_override
        return self._to_tick(Decimal(str(self._candles[self._cursor - 1].close)))

    def _visible_cursor(self) -> int:
        if self.faults.candles_frozen and self._frozen_at is not None:
            return self._frozen_at
        return self._cursor

    def _match_resting(self, low: Decimal, high: Decimal) -> None:
        for order in sorted(self._orders.values(), key=lambda o: o.order_id):
            if order.status != "NEW" or order.type not in ("LIMIT", "LIMIT_MAKER"):
                continue
            crossed = low <= order.price if order.side == "BUY" else high >= order.price
            if crossed:
                # The lock reserved qty*limit (buy) or qty (sell); release it before settling.
                if order.side == "BUY":
                    self._locked[self.quote] -= order.orig_qty * order.price
                    self._free[self.quote] += order.orig_qty * order.price
                else:
                    self._locked[self.base] -= order.orig_qty
                    self._free[self.base] += order.orig_qty
                self._fill(order, order.price, is_maker=True)

    def _fill(self, order: Order, price: Decimal, *, is_maker: bool) -> tuple[Order, Trade]:
        qty = order.orig_qty
        quote_qty = qty * price
        rate = self.rules.commission
        if order.side == "BUY":
            commission = (qty * rate).quantize(_E8)
            commission_asset = self.base
            self._free[self.quote] -= quote_qty
            self._free[self.base] = self._free.get(self.base, Decimal(0)) + qty - commission
        else:
            commission = (quote_qty * rate).quantize(_E8)
            commission_asset = self.quote
            self._free[self.base] -= qty
            self._free[self.quote] = self._free.get(self.quote, Decimal(0)) + quote_qty - commission
        now = _now_ms()
        trade = Trade(
            trade_id=self._next_trade_id,
            order_id=order.order_id,
            symbol=order.symbol,
            side=order.side,
            price=price,
            qty=qty,
            quote_qty=quote_qty,
            commission=commission,
            commission_asset=commission_asset,
            time=now,
            is_maker=is_maker,
        )
        self._next_trade_id += 1
        self._trades.append(trade)
        filled = dataclasses.replace(
            order,
            executed_qty=qty,
            cumulative_quote_qty=quote_qty,
            status="FILLED",
            update_time=now,
        )
        self._orders[order.order_id] = filled
        return filled, trade

    # -- request parsing helpers -------------------------------------------------------------

    def _check_symbol(self, params: Mapping[str, str], required: bool = True) -> None:
        symbol = params.get("symbol")
        if symbol is None:
            if required:
                raise _mandatory("symbol")
            return
        if symbol != self.symbol:
            raise BinanceError(-1121, "Invalid symbol.")

    @staticmethod
    def _decimal(params: Mapping[str, str], name: str) -> Decimal | None:
        raw = params.get(name)
        if raw is None or raw == "":
            return None
        try:
            value = Decimal(raw)
        except InvalidOperation:
            raise BinanceError(
                -1100,
                f"Illegal characters found in parameter '{name}'; "
                "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.",
            ) from None
        if not value.is_finite() or value < 0:
            raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'.")
        return value

    @staticmethod
    def _int(params: Mapping[str, str], name: str) -> int | None:
        raw = params.get(name)
        if raw is None or raw == "":
            return None
        try:
            return int(raw)
        except ValueError:
            raise BinanceError(
                -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]+$'."
            ) from None

    def _limit(self, params: Mapping[str, str], default: int, maximum: int) -> int:
        limit = self._int(params, "limit")
        if limit is None:
            return default
        if limit <= 0:
            raise BinanceError(-1100, "Illegal characters found in parameter 'limit'.")
        return min(limit, maximum)

    # -- public endpoints --------------------------------------------------------------------

    def api_ping(self, params: Mapping[str, str]) -> object:
        return {}

    def api_time(self, params: Mapping[str, str]) -> object:
        return {"serverTime": _now_ms()}

    def api_system_status(self, params: Mapping[str, str]) -> object:
        return {"status": 0, "msg": "normal"}

    def api_exchange_info(self, params: Mapping[str, str]) -> object:
        wanted = params.get("symbol")
        if "symbols" in params:
            try:
                wanted_list = json.loads(params["symbols"])
            except ValueError:
                raise _mandatory("symbols") from None
            if self.symbol not in wanted_list:
                raise BinanceError(-1121, "Invalid symbol.")
        elif wanted is not None and wanted != self.symbol:
            raise BinanceError(-1121, "Invalid symbol.")
        r = self.rules
        return {
            "timezone": "UTC",
            "serverTime": _now_ms(),
            "rateLimits": [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 6000,
                },
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
            ],
            "exchangeFilters": [],
            "symbols": [
                {
                    "symbol": self.symbol,
                    "status": "TRADING",
                    "baseAsset": self.base,
                    "baseAssetPrecision": 8,
                    "quoteAsset": self.quote,
                    "quotePrecision": 8,
                    "quoteAssetPrecision": 8,
                    "baseCommissionPrecision": 8,
                    "quoteCommissionPrecision": 8,
                    "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET"],
                    "icebergAllowed": False,
                    "ocoAllowed": False,
                    "otoAllowed": False,
                    "quoteOrderQtyMarketAllowed": True,
                    "allowTrailingStop": False,
                    "cancelReplaceAllowed": False,
                    "isSpotTradingAllowed": True,
                    "isMarginTradingAllowed": False,
                    "filters": [
                        {
                            "filterType": "PRICE_FILTER",
                            "minPrice": _fmt(r.min_price),
                            "maxPrice": _fmt(r.max_price),
                            "tickSize": _fmt(r.tick_size),
                        },
                        {
                            "filterType": "LOT_SIZE",
                            "minQty": _fmt(r.min_qty),
                            "maxQty": _fmt(r.max_qty),
                            "stepSize": _fmt(r.step_size),
                        },
                        {
                            "filterType": "MARKET_LOT_SIZE",
                            "minQty": _fmt(0),
                            "maxQty": _fmt(r.max_qty),
                            "stepSize": _fmt(0),
                        },
                        {
                            "filterType": "NOTIONAL",
                            "minNotional": _fmt(r.min_notional),
                            "applyMinToMarket": True,
                            "maxNotional": _fmt(r.max_notional),
                            "applyMaxToMarket": False,
                            "avgPriceMins": 5,
                        },
                    ],
                    "permissions": [],
                    "permissionSets": [["SPOT"]],
                    "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                    "allowedSelfTradePreventionModes": [
                        "EXPIRE_TAKER",
                        "EXPIRE_MAKER",
                        "EXPIRE_BOTH",
                    ],
                }
            ],
        }

    def api_klines(self, params: Mapping[str, str]) -> object:
        self._check_symbol(params)
        interval = params.get("interval")
        if not interval:
            raise _mandatory("interval")
        if interval != self.interval:
            # Only the configured interval exists; resampling would invent data.
            raise BinanceError(-1120, "Invalid interval.")
        limit = self._limit(params, 500, self.klines_max_limit)
        start = self._int(params, "startTime")
        end = self._int(params, "endTime")
        with self._lock:
            self.klines_served += 1
            fault = self._klines_fault
            if fault is not None and self.klines_served > fault[0]:
                raise fault[1]
            visible = self._visible_cursor()
            frozen = self.faults.candles_frozen
            price = self._current_price()
        # Pages are cut by binary search on the open times: a history of millions of candles
        # costs one page per request, not a pass over the whole list.
        lo = 0 if start is None else bisect.bisect_left(self._stamps, start, 0, visible)
        hi = visible if end is None else bisect.bisect_right(self._stamps, end, lo, visible)
        if start is not None:
            hi = min(hi, lo + limit)
        else:
            lo = max(lo, hi - limit)
        rows = [self._kline_row(c) for c in self._candles[lo:hi]]
        if self.forming_candle and not frozen and hi == visible:
            last = self._candles[visible - 1]
            prev_close = Decimal(str(last.close))
            forming = Candle(
                last.timestamp + self._interval_ms,
                float(prev_close),
                float(max(prev_close, price)),
                float(min(prev_close, price)),
                float(price),
                0.0,
            )
            if (start is None or forming.timestamp >= start) and (
                end is None or forming.timestamp <= end
            ):
                rows.append(self._kline_row(forming))
        # Binance pages forward from startTime, otherwise returns the most recent bars.
        return rows[:limit] if start is not None else rows[-limit:]

    def fail_klines_after(
        self,
        pages: int,
        code: int = -1000,
        msg: str = "An unknown error occurred.",
        status: int = 400,
    ) -> None:
        """Answer every klines request after the first `pages` with a Binance error (a
        download dying half-way); `clear_klines_fault()` lets it through again."""
        with self._lock:
            self.klines_served = 0
            self._klines_fault = (pages, BinanceError(code, msg, status))

    def clear_klines_fault(self) -> None:
        with self._lock:
            self._klines_fault = None

    def _kline_row(self, c: Candle) -> list[Any]:
        quote_volume = c.volume * (c.open + c.close) / 2
        return [
            c.timestamp,
            _fmt(c.open),
            _fmt(c.high),
            _fmt(c.low),
            _fmt(c.close),
            _fmt(c.volume),
            c.timestamp + self._interval_ms - 1,
            _fmt(quote_volume),
            max(1, int(c.volume)),
            _fmt(c.volume / 2),
            _fmt(quote_volume / 2),
            "0",
        ]

    def _ticker_24hr(self) -> dict[str, Any]:
        with self._lock:
            window_len = max(1, math.ceil(86_400_000 / self._interval_ms))
            window = self._candles[max(0, self._cursor - window_len) : self._cursor]
            price = self._current_price()
        open_price = Decimal(str(window[0].open))
        high = max(Decimal(str(max(c.high for c in window))), price)
        low = min(Decimal(str(min(c.low for c in window))), price)
        volume = sum(c.volume for c in window)
        quote_volume = sum(c.volume * c.close for c in window)
        change = price - open_price
        return {
            "symbol": self.symbol,
            "priceChange": _fmt(change),
            "priceChangePercent": f"{change / open_price * 100:.3f}",
            "weightedAvgPrice": _fmt(quote_volume / volume if volume else float(price)),
            "prevClosePrice": _fmt(window[-2].close if len(window) > 1 else window[0].open),
            "lastPrice": _fmt(price),
            "lastQty": _fmt(0),
            "bidPrice": _fmt(price),
            "bidQty": _fmt(1),
            "askPrice": _fmt(price),
            "askQty": _fmt(1),
            "openPrice": _fmt(open_price),
            "highPrice": _fmt(high),
            "lowPrice": _fmt(low),
            "volume": _fmt(volume),
            "quoteVolume": _fmt(quote_volume),
            "openTime": window[0].timestamp,
            "closeTime": window[-1].timestamp + self._interval_ms - 1,
            "firstId": 0,
            "lastId": len(window) - 1,
            "count": len(window),
        }

    def api_ticker_24hr(self, params: Mapping[str, str]) -> object:
        self._check_symbol(params, required=False)
        ticker = self._ticker_24hr()
        return ticker if "symbol" in params else [ticker]

    def api_ticker_price(self, params: Mapping[str, str]) -> object:
        self._check_symbol(params, required=False)
        body = {"symbol": self.symbol, "price": _fmt(self.price)}
        return body if "symbol" in params else [body]

    def api_book_ticker(self, params: Mapping[str, str]) -> object:
        self._check_symbol(params, required=False)
        price = _fmt(self.price)
        body = {
            "symbol": self.symbol,
            "bidPrice": price,
            "bidQty": _fmt(1),
            "askPrice": price,
            "askQty": _fmt(1),
        }
        return body if "symbol" in params else [body]

    def api_avg_price(self, params: Mapping[str, str]) -> object:
        self._check_symbol(params)
        return {"mins": 5, "price": _fmt(self.price), "closeTime": _now_ms()}

    def api_depth(self, params: Mapping[str, str]) -> object:
        self._check_symbol(params)
        limit = self._limit(params, 100, 5000)
        price = self.price
        tick = self.rules.tick_size
        levels = range(min(limit, 20))
        return {
            "lastUpdateId": _now_ms(),
            "bids": [[_fmt(price - i * tick), _fmt(1)] for i in levels],
            "asks": [[_fmt(price + i * tick), _fmt(1)] for i in levels],
        }

    # -- signed endpoints --------------------------------------------------------------------

    def api_account(self, params: Mapping[str, str]) -> object:
        omit_zero = params.get("omitZeroBalances") == "true"
        with self._lock:
            balances = [
                {"asset": a, "free": _fmt(self._free[a]), "locked": _fmt(self._locked.get(a, 0))}
                for a in sorted(self._free)
                if not omit_zero or self._free[a] or self._locked.get(a)
            ]
        commission = int(self.rules.commission * 10_000)
        rate = _fmt(self.rules.commission)
        return {
            "makerCommission": commission,
            "takerCommission": commission,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {"maker": rate, "taker": rate, "buyer": _fmt(0), "seller": _fmt(0)},
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": _now_ms(),
            "accountType": "SPOT",
            "balances": balances,
            "permissions": ["SPOT"],
            "uid": 1,
        }

    def _check_filters(self, qty: Decimal, price: Decimal, *, is_market: bool) -> None:
        r = self.rules
        off_tick = price < r.min_price or price > r.max_price or price % r.tick_size != 0
        if not is_market and off_tick:
            raise _filter_failure("PRICE_FILTER")
        if qty < r.min_qty or qty > r.max_qty or (qty - r.min_qty) % r.step_size != 0:
            raise _filter_failure("LOT_SIZE")
        notional = qty * price
        if notional < r.min_notional or (not is_market and notional > r.max_notional):
            raise _filter_failure("NOTIONAL")

    def place_order(self, params: Mapping[str, str], *, test: bool = False) -> object:
        self._check_symbol(params)
        side = params.get("side")
        if not side:
            raise _mandatory("side")
        if side not in ("BUY", "SELL"):
            raise BinanceError(-1117, "Invalid side.")
        order_type = params.get("type")
        if not order_type:
            raise _mandatory("type")
        if order_type not in ("MARKET", "LIMIT", "LIMIT_MAKER"):
            if order_type in ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"):
                raise BinanceError(-1014, "Unsupported order combination.")
            raise BinanceError(-1116, "Invalid orderType.")
        qty = self._decimal(params, "quantity")
        quote_order_qty = self._decimal(params, "quoteOrderQty")
        limit_price = self._decimal(params, "price")
        tif = params.get("timeInForce")
        resp_type = params.get("newOrderRespType") or "FULL"

        with self._lock:
            price = self._current_price()
            if order_type == "MARKET":
                if qty is None and quote_order_qty is None:
                    raise BinanceError(
                        -1102,
                        "Param 'quantity' or 'quoteOrderQty' must be sent, "
                        "but both were empty/null!",
                    )
                if qty is None:
                    assert quote_order_qty is not None
                    step = self.rules.step_size
                    qty = (quote_order_qty / price / step).to_integral_value(ROUND_DOWN) * step
                self._check_filters(qty, price, is_market=True)
                exec_price = price
                marketable = True
            else:
                if qty is None:
                    raise _mandatory("quantity")
                if limit_price is None:
                    raise _mandatory("price")
                if order_type == "LIMIT" and not tif:
                    raise _mandatory("timeInForce")
                if tif is not None and tif not in ("GTC", "IOC", "FOK"):
                    raise BinanceError(-1115, "Invalid timeInForce.")
                self._check_filters(qty, limit_price, is_market=False)
                marketable = limit_price >= price if side == "BUY" else limit_price <= price
                exec_price = price
                if order_type == "LIMIT_MAKER" and marketable:
                    raise BinanceError(-2010, "Order would immediately match and take.")

            # Binance checks funds against the limit price for limit orders.
            reserve_price = exec_price if order_type == "MARKET" else limit_price
            assert reserve_price is not None
            if side == "BUY":
                needed, asset = qty * reserve_price, self.quote
            else:
                needed, asset = qty, self.base
            if self._free.get(asset, Decimal(0)) < needed:
                raise BinanceError(-2010, "Account has insufficient balance for requested action.")

            client_id = params.get("newClientOrderId") or f"fake{self._next_order_id:08d}"
            if any(
                o.client_order_id == client_id and o.status == "NEW" for o in self._orders.values()
            ):
                raise BinanceError(-2010, "Duplicate order sent.")
            if test:
                return {}

            now = _now_ms()
            order = Order(
                order_id=self._next_order_id,
                client_order_id=client_id,
                symbol=self.symbol,
                side=side,
                type=order_type,
                time_in_force=None if order_type != "LIMIT" else tif,
                price=Decimal(0) if order_type == "MARKET" else (limit_price or Decimal(0)),
                orig_qty=qty,
                executed_qty=Decimal(0),
                cumulative_quote_qty=Decimal(0),
                status="NEW",
                time=now,
                update_time=now,
                orig_quote_order_qty=quote_order_qty or Decimal(0),
            )
            self._next_order_id += 1
            self._orders[order.order_id] = order
            fills: list[Trade] = []
            if marketable:
                order, trade = self._fill(order, exec_price, is_maker=False)
                fills.append(trade)
            elif tif in ("IOC", "FOK"):
                order = dataclasses.replace(order, status="EXPIRED")
                self._orders[order.order_id] = order
            else:
                if side == "BUY":
                    self._free[self.quote] -= needed
                    self._locked[self.quote] = self._locked.get(self.quote, Decimal(0)) + needed
                else:
                    self._free[self.base] -= needed
                    self._locked[self.base] = self._locked.get(self.base, Decimal(0)) + needed

        if resp_type == "ACK":
            return {
                "symbol": order.symbol,
                "orderId": order.order_id,
                "orderListId": -1,
                "clientOrderId": order.client_order_id,
                "transactTime": order.time,
            }
        body = self._order_json(order, new=True)
        if resp_type == "FULL":
            body["fills"] = [
                {
                    "price": _fmt(t.price),
                    "qty": _fmt(t.qty),
                    "commission": _fmt(t.commission),
                    "commissionAsset": t.commission_asset,
                    "tradeId": t.trade_id,
                }
                for t in fills
            ]
        return body

    def api_order_test(self, params: Mapping[str, str]) -> object:
        return self.place_order(params, test=True)

    def _order_json(self, order: Order, *, new: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "symbol": order.symbol,
            "orderId": order.order_id,
            "orderListId": -1,
            "clientOrderId": order.client_order_id,
            "price": _fmt(order.price),
            "origQty": _fmt(order.orig_qty),
            "executedQty": _fmt(order.executed_qty),
            "cummulativeQuoteQty": _fmt(order.cumulative_quote_qty),
            "status": order.status,
            "timeInForce": order.time_in_force or "GTC",
            "type": order.type,
            "side": order.side,
            "workingTime": order.time,
            "selfTradePreventionMode": "EXPIRE_MAKER",
        }
        if new:
            body["transactTime"] = order.time
        else:
            body.update(
                {
                    "stopPrice": _fmt(0),
                    "icebergQty": _fmt(0),
                    "time": order.time,
                    "updateTime": order.update_time,
                    "isWorking": True,
                    "origQuoteOrderQty": _fmt(order.orig_quote_order_qty),
                }
            )
        return body

    def _find_order(self, params: Mapping[str, str]) -> Order:
        order_id = self._int(params, "orderId")
        client_id = params.get("origClientOrderId")
        if order_id is None and not client_id:
            raise BinanceError(
                -1102,
                "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!",
            )
        for order in self._orders.values():
            if order_id is not None and order.order_id == order_id:
                return order
            if order_id is None and order.client_order_id == client_id:
                return order
        raise BinanceError(-2013, "Order does not exist.")

    def api_get_order(self, params: Mapping[str, str]) -> object:
        self._check_symbol(params)
        with self._lock:
            return self._order_json(self._find_order(params))

    def _cancel(self, order: Order) -> Order:
        if order.side == "BUY":
            reserved, asset = order.orig_qty * order.price, self.quote
        else:
            reserved, asset = order.orig_qty, self.base
        self._locked[asset] -= reserved
        self._free[asset] += reserved
        cancelled = dataclasses.replace(order, status="CANCELED", update_time=_now_ms())
        self._orders[order.order_id] = cancelled
        return cancelled

    def api_cancel_order(self, params: Mapping[str, str]) -> object:
        self._check_symbol(params)
        with self._lock:
            try:
                order = self._find_order(params)
            except BinanceError as exc:
                if exc.code == -2013:
                    raise BinanceError(-2011, "Unknown order sent.") from None
                raise
            if order.status != "NEW":
                raise BinanceError(-2011, "Unknown order sent.")
            cancelled = self._cancel(order)
        body = self._order_json(cancelled, new=True)
        body["origClientOrderId"] = cancelled.client_order_id
        body["transactTime"] = cancelled.update_time
        return body

    def api_open_orders(self, params: Mapping[str, str]) -> object:
        self._check_symbol(params, required=False)
        return [self._order_json(o) for o in self.open_orders]

    def api_cancel_open_orders(self, params: Mapping[str, str]) -> object:
        self._check_symbol(params)
        with self._lock:
            open_orders = [o for o in self._orders.values() if o.status == "NEW"]
            if not open_orders:
                raise BinanceError(-2011, "Unknown order sent.")
            cancelled = [self._cancel(o) for o in open_orders]
        return [
            {**self._order_json(o, new=True), "origClientOrderId": o.client_order_id}
            for o in cancelled
        ]

    def api_all_orders(self, params: Mapping[str, str]) -> object:
        self._check_symbol(params)
        limit = self._limit(params, 500, 1000)
        start = self._int(params, "startTime")
        end = self._int(params, "endTime")
        from_id = self._int(params, "orderId")
        rows = [
            o
            for o in self.orders
            if (start is None or o.time >= start)
            and (end is None or o.time <= end)
            and (from_id is None or o.order_id >= from_id)
        ]
        return [self._order_json(o) for o in rows[:limit]]

    def api_my_trades(self, params: Mapping[str, str]) -> object:
        self._check_symbol(params)
        limit = self._limit(params, 500, 1000)
        start = self._int(params, "startTime")
        end = self._int(params, "endTime")
        from_id = self._int(params, "fromId")
        order_id = self._int(params, "orderId")
        rows = [
            t
            for t in self.trades
            if (start is None or t.time >= start)
            and (end is None or t.time <= end)
            and (from_id is None or t.trade_id >= from_id)
            and (order_id is None or t.order_id == order_id)
        ]
        rows = rows[:limit] if start is not None or from_id is not None else rows[-limit:]
        return [
            {
                "symbol": t.symbol,
                "id": t.trade_id,
                "orderId": t.order_id,
                "orderListId": -1,
                "price": _fmt(t.price),
                "qty": _fmt(t.qty),
                "quoteQty": _fmt(t.quote_qty),
                "commission": _fmt(t.commission),
                "commissionAsset": t.commission_asset,
                "time": t.time,
                "isBuyer": t.side == "BUY",
                "isMaker": t.is_maker,
                "isBestMatch": True,
            }
            for t in rows
        ]

    # -- authentication ----------------------------------------------------------------------

    def authenticate(
        self, api_key: str | None, raw_query: str, raw_body: str, params: Mapping[str, str]
    ) -> None:
        """Binance's HMAC scheme: signature over query string + body, minus the signature."""
        if not api_key:
            raise BinanceError(-2014, "API-key format invalid.", status=401)
        if not hmac.compare_digest(api_key, self.api_key):
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
        signature = params.get("signature")
        if not signature:
            raise _mandatory("signature")
        timestamp = self._int(params, "timestamp")
        if timestamp is None:
            raise _mandatory("timestamp")
        recv_window = self._int(params, "recvWindow")
        recv_window = 5000 if recv_window is None else recv_window
        if recv_window > _MAX_RECV_WINDOW:
            raise BinanceError(-1131, "recvWindow must be less than 60000")
        payload = _strip_signature(raw_query) + _strip_signature(raw_body)
        expected = hmac.new(self.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise BinanceError(-1022, "Signature for this request is not valid.")
        now = _now_ms()
        if timestamp > now + 1000:
            raise BinanceError(
                -1021, "Timestamp for this request was 1000ms ahead of the server's time."
            )
        if now - timestamp > recv_window:
            raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")

    def redact(self, params: Mapping[str, str]) -> dict[str, str]:
        secrets = {self.api_key, self.api_secret}
        return {
            k: ("<redacted>" if v in secrets else v) for k, v in params.items() if k != "signature"
        }


def _strip_signature(raw: str) -> str:
    return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))


_Endpoint = Callable[[FakeBinance, Mapping[str, str]], object]

# (method, path) -> (signed, implementation). Only spot endpoints exist; anything else is a 404,
# which is also how a stray futures/sapi call from ccxt shows up in the request log.
_ROUTES: dict[tuple[str, str], tuple[bool, _Endpoint]] = {
    ("GET", "/api/v3/ping"): (False, FakeBinance.api_ping),
    ("GET", "/api/v3/time"): (False, FakeBinance.api_time),
    ("GET", "/api/v3/exchangeInfo"): (False, FakeBinance.api_exchange_info),
    ("GET", "/api/v3/klines"): (False, FakeBinance.api_klines),
    ("GET", "/api/v3/uiKlines"): (False, FakeBinance.api_klines),
    ("GET", "/api/v3/ticker/24hr"): (False, FakeBinance.api_ticker_24hr),
    ("GET", "/api/v3/ticker/price"): (False, FakeBinance.api_ticker_price),
    ("GET", "/api/v3/ticker/bookTicker"): (False, FakeBinance.api_book_ticker),
    ("GET", "/api/v3/avgPrice"): (False, FakeBinance.api_avg_price),
    ("GET", "/api/v3/depth"): (False, FakeBinance.api_depth),
    ("GET", "/sapi/v1/system/status"): (False, FakeBinance.api_system_status),
    ("GET", "/api/v3/account"): (True, FakeBinance.api_account),
    ("POST", "/api/v3/order"): (True, FakeBinance.place_order),
    ("POST", "/api/v3/order/test"): (True, FakeBinance.api_order_test),
    ("GET", "/api/v3/order"): (True, FakeBinance.api_get_order),
    ("DELETE", "/api/v3/order"): (True, FakeBinance.api_cancel_order),
    ("GET", "/api/v3/openOrders"): (True, FakeBinance.api_open_orders),
    ("DELETE", "/api/v3/openOrders"): (True, FakeBinance.api_cancel_open_orders),
    ("GET", "/api/v3/allOrders"): (True, FakeBinance.api_all_orders),
    ("GET", "/api/v3/myTrades"): (True, FakeBinance.api_my_trades),
}


class _BinanceHandler(tornado.web.RequestHandler):
    def initialize(self, server: FakeBinance) -> None:
        self.server = server
        self._params: dict[str, str] = {}
        self._fault: str | None = None
        self._recorded = False

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json;charset=UTF-8")

    def compute_etag(self) -> str | None:
        return None  # prices change under the same URL; never let a client see a 304

    async def get(self) -> None:
        await self._handle("GET")

    async def post(self) -> None:
        await self._handle("POST")

    async def delete(self) -> None:
        await self._handle("DELETE")

    async def put(self) -> None:
        await self._handle("PUT")

    def _send_json(self, status: int, body: object) -> None:
        self.set_status(status)
        self.finish(json.dumps(body, separators=(",", ":")))

    def _send_error(self, exc: BinanceError) -> None:
        self._send_json(exc.status, {"code": exc.code, "msg": exc.msg})

    async def _handle(self, method: str) -> None:
        request = self.request
        path = request.path
        raw_query = request.query
        raw_body = request.body.decode("utf-8", "replace") if request.body else ""
        # Binance reads parameters from both the query string and a form body.
        params = dict(parse_qsl(raw_query, keep_blank_values=True))
        params.update(parse_qsl(raw_body, keep_blank_values=True))
        self._params = self.server.redact(params)

        fault = self.server.faults.take(method, path, _REQUEST_FAULTS)
        if fault is not None:
            self._fault = fault.kind if fault.status is None else f"http_{fault.status}"
            if fault.kind == "timeout":
                await self.server._sleep(fault.delay)
                if self.server._is_stopping():
                    self._drop_connection()
                    return
            elif fault.kind == "disconnect":
                self._drop_connection()
                return
            elif fault.kind == "malformed_json":
                self.set_status(200)
                self.finish('{"code":0,"msg":"truncated","data":[{"price":"1')
                return
            else:
                self._send_fault(fault.status or 500, fault.code, fault.msg, fault.retry_after)
                return

        route = _ROUTES.get((method, path))
        if route is None:
            known = any(p == path for _, p in _ROUTES)
            status = 405 if known else 404
            self.set_status(status)
            self.set_header("Content-Type", "text/html")
            self.finish(f"<html><body><h1>{status}</h1></body></html>")
            return
        signed, endpoint = route
        try:
            if signed:
                self.server.authenticate(
                    request.headers.get("X-MBX-APIKEY"), raw_query, raw_body, params
                )
            if method == "POST" and path == "/api/v3/order":
                reject = self.server.faults.take(method, path, _ORDER_FAULTS)
                if reject is not None:
                    self._fault = "reject_order"
                    raise BinanceError(
                        reject.code if reject.code is not None else -2010,
                        reject.msg or "Order rejected.",
                    )
            body = endpoint(self.server, params)
        except BinanceError as exc:
            self._send_error(exc)
            return
        self._send_json(200, body)

    def _send_fault(
        self, status: int, code: int | None, msg: str | None, retry_after: int | None
    ) -> None:
        self.set_status(status)
        if retry_after is not None:
            self.set_header("Retry-After", str(retry_after))
        if status in (418, 429):
            default_msg = (
                "Way too many requests; IP banned until further notice."
                if status == 418
                else "Too many requests; current limit of IP is 6000 requests per minute."
            )
            self.finish(json.dumps({"code": code or -1003, "msg": msg or default_msg}))
        elif code is not None:
            self.finish(json.dumps({"code": code, "msg": msg or ""}))
        elif status >= 500:
            # Gateway errors come back as plain text, so ccxt falls through to its HTTP mapping.
            self.set_header("Content-Type", "text/plain")
            self.finish(f"{status} {self._reason}")
        else:
            self.finish(json.dumps({"code": -1000, "msg": msg or "An unknown error occurred."}))

    def _drop_connection(self) -> None:
        self._record(0)
        connection = self.request.connection
        stream = getattr(connection, "stream", None)
        if stream is not None:
            stream.close()
        # Keep tornado from trying to write a response on the dead stream.
        self._finished = True

    def _record(self, status: int) -> None:
        self._recorded = True
        self.server._record(
            RequestRecord(
                time=time.time(),
                method=self.request.method or "",
                path=self.request.path,
                params=self._params,
                status=status,
                fault=self._fault,
            )
        )

    def finish(self, chunk: str | bytes | dict[str, Any] | None = None) -> Future[None]:
        # Record before the response is flushed: a client that has its answer must be able to
        # see the request in the log (on_finish would race with it).
        if not self._recorded:
            self._record(self.get_status())
        return super().finish(chunk)


def ccxt_binance_for(
    server: FakeBinance,
    api_key: str | None = None,
    secret: str | None = None,
    **config: Any,
) -> ccxt.binance:
    """A real ``ccxt.binance`` whose every API base URL points at ``server``.

    ``config`` is passed to ccxt (``timeout=500``, ``options={...}`` is merged into ours).
    Credentials default to the server's own. Every ccxt API family (futures, sapi, ...) is
    rebased too, so a stray call hits the fake's 404 instead of the real exchange.
    """
    import ccxt

    options: dict[str, Any] = {
        "defaultType": "spot",
        # Only spot exchangeInfo; the default also loads USD-M and COIN-M futures markets.
        "fetchMarkets": {"types": ["spot"]},
        # Otherwise a keyed instance calls sapi /capital/config/getall during load_markets.
        "fetchCurrencies": False,
        "fetchMargins": False,
        "adjustForTimeDifference": False,
    }
    options.update(config.pop("options", {}))
    exchange = ccxt.binance(
        {
            "apiKey": server.api_key if api_key is None else api_key,
            "secret": server.api_secret if secret is None else secret,
            "enableRateLimit": True,
            "rateLimit": 1,
            "options": options,
            **config,
        }
    )
    api_urls = {
        name: server.url + urlsplit(url).path if isinstance(url, str) else url
        for name, url in exchange.urls["api"].items()
    }
    exchange.urls = {**exchange.urls, "api": api_urls}
    # ccxt picks its spot-specific error table by URL prefix (https://api.binance.com/), which a
    # local URL never matches; fold it into the generic table with the same precedence.
    spot_exact = exchange.exceptions.get("spot", {}).get("exact", {})
    exchange.exceptions = {
        **exchange.exceptions,
        "exact": {**exchange.exceptions["exact"], **spot_exact},
    }
    return exchange
