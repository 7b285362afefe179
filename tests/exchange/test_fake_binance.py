"""Real ccxt.binance against the in-process fake Binance server, over HTTP."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from decimal import Decimal

import ccxt
import pandas as pd
import pytest
import requests
from atb_testkit import (
    INSUFFICIENT_BALANCE_MSG,
    Balance,
    Candle,
    FakeBinance,
    ccxt_binance_for,
    synthetic_candles,
)

SYMBOL = "BTC/USDT"
HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def flat_candles(closes: list[float], lows: list[float] | None = None) -> list[Candle]:
    """Candles whose close (and optionally low) we control, for exact fill assertions."""
    lows = lows or [c - 1 for c in closes]
    return [
        Candle(T0 + i * HOUR, close, max(close, low) + 1, low, close, 10.0)
        for i, (close, low) in enumerate(zip(closes, lows, strict=True))
    ]


@pytest.fixture
def server() -> Iterator[FakeBinance]:
    with FakeBinance(balances={"USDT": 10_000.0, "BTC": 0.5}) as srv:
        yield srv


@pytest.fixture
def exchange(server: FakeBinance) -> ccxt.binance:
    return ccxt_binance_for(server, timeout=2_000)


# -- market data ---------------------------------------------------------------------------


def test_load_markets_only_touches_spot_exchange_info(
    server: FakeBinance, exchange: ccxt.binance
) -> None:
    markets = exchange.load_markets()

    assert list(markets) == [SYMBOL]
    market = markets[SYMBOL]
    assert market["spot"] and market["active"]
    assert market["precision"] == {"amount": 1e-05, "price": 0.01, "base": 1e-08, "quote": 1e-08}
    assert market["limits"]["amount"]["min"] == 1e-05
    assert market["limits"]["cost"]["min"] == 5.0
    assert [r.path for r in server.request_log] == ["/api/v3/exchangeInfo"]
    assert exchange.amount_to_precision(SYMBOL, 0.0123456) == "0.01234"


def test_every_ccxt_api_family_points_at_the_server(
    server: FakeBinance, exchange: ccxt.binance
) -> None:
    assert all(url.startswith(server.url + "/") for url in exchange.urls["api"].values())
    assert exchange.fetch_status()["status"] == "ok"
    assert abs(exchange.fetch_time() - time.time() * 1000) < 5_000


def test_fetch_ohlcv_returns_candles_up_to_cursor_and_advance_reveals_more(
    server: FakeBinance, exchange: ccxt.binance
) -> None:
    candles = server.candles
    ohlcv = exchange.fetch_ohlcv(SYMBOL, "1h", limit=1000)

    assert len(ohlcv) == server.cursor == 100
    assert ohlcv[-1][0] == candles[99].timestamp
    assert ohlcv[-1][1:] == [
        candles[99].open,
        candles[99].high,
        candles[99].low,
        candles[99].close,
        candles[99].volume,
    ]

    revealed = server.advance(3)
    assert revealed == list(candles[100:103])
    ohlcv = exchange.fetch_ohlcv(SYMBOL, "1h", limit=5)
    assert [row[0] for row in ohlcv] == [c.timestamp for c in candles[98:103]]

    since = exchange.fetch_ohlcv(SYMBOL, "1h", since=candles[10].timestamp, limit=3)
    assert [row[0] for row in since] == [c.timestamp for c in candles[10:13]]


def test_advance_stops_at_the_end_of_the_data() -> None:
    srv = FakeBinance(candles=flat_candles([100.0, 101.0, 102.0]), warmup=2)
    assert srv.advance(5) == [srv.candles[2]]
    assert srv.advance() == []
    assert srv.cursor == 3


def test_unknown_interval_is_a_binance_error(exchange: ccxt.binance) -> None:
    with pytest.raises(ccxt.BadRequest, match="-1120"):
        exchange.fetch_ohlcv(SYMBOL, "5m")


def test_forming_candle_option_mimics_binance_live_bar() -> None:
    with FakeBinance(
        candles=flat_candles([100.0, 101.0, 102.0]), warmup=2, forming_candle=True
    ) as srv:
        ex = ccxt_binance_for(srv)
        rows = ex.fetch_ohlcv(SYMBOL, "1h")
        assert [r[0] for r in rows] == [T0, T0 + HOUR, T0 + 2 * HOUR]
        assert rows[-1][1:] == [101.0, 101.0, 101.0, 101.0, 0.0]

        srv.set_price(103.5)
        assert ex.fetch_ohlcv(SYMBOL, "1h")[-1][1:] == [101.0, 103.5, 101.0, 103.5, 0.0]


def test_candles_from_dataframe_with_iso_timestamps() -> None:
    frame = pd.DataFrame(
        {
            "timestamp": ["2023-01-01T00:00:00Z", "2023-01-01T01:00:00Z"],
            "open": [16541.77, 16529.59],
            "high": [16545.7, 16556.8],
            "low": [16508.39, 16525.78],
            "close": [16529.67, 16551.47],
            "volume": [4364.8357, 3590.06669],
        }
    )
    srv = FakeBinance(candles=frame)
    assert srv.candles[0] == Candle(
        1_672_531_200_000, 16541.77, 16545.7, 16508.39, 16529.67, 4364.8357
    )
    assert srv.candles[1].timestamp == 1_672_531_200_000 + HOUR
    assert srv.cursor == 2


def test_synthetic_candles_are_deterministic_and_consistent() -> None:
    a, b = synthetic_candles(), synthetic_candles()
    assert a == b and len(a) == 500
    assert all(c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high for c in a)
    assert all(nxt.timestamp - cur.timestamp == HOUR for cur, nxt in itertools.pairwise(a))


def test_fetch_ticker_tracks_current_price(server: FakeBinance, exchange: ccxt.binance) -> None:
    ticker = exchange.fetch_ticker(SYMBOL)
    assert ticker["last"] == server.current_candle.close
    assert ticker["bid"] == ticker["ask"] == ticker["last"]

    server.set_price(31_234.56)
    assert exchange.fetch_ticker(SYMBOL)["last"] == 31_234.56
    server.advance()
    assert exchange.fetch_ticker(SYMBOL)["last"] == server.current_candle.close


# -- account and orders ----------------------------------------------------------------------


def test_fetch_balance_is_signed(server: FakeBinance, exchange: ccxt.binance) -> None:
    balance = exchange.fetch_balance()

    assert balance["USDT"] == {"free": 10_000.0, "used": 0.0, "total": 10_000.0}
    assert balance["BTC"]["free"] == 0.5
    (record,) = server.requests_to("/api/v3/account")
    assert record.status == 200 and "timestamp" in record.params
    assert "signature" not in record.params


def test_market_buy_and_sell_move_balances_and_charge_fee(
    server: FakeBinance, exchange: ccxt.binance
) -> None:
    price = Decimal(str(server.current_candle.close))

    buy = exchange.create_order(SYMBOL, "market", "buy", 0.1)
    assert buy["status"] == "closed" and buy["filled"] == 0.1
    assert buy["average"] == float(price)
    assert buy["fee"] == {"currency": "BTC", "cost": 0.0001}
    balances = server.balances()
    assert balances["USDT"].free == Decimal("10000") - Decimal("0.1") * price
    assert balances["BTC"].free == Decimal("0.5") + Decimal("0.1") - Decimal("0.0001")

    sell = exchange.create_order(SYMBOL, "market", "sell", 0.2)
    proceeds = Decimal("0.2") * price
    assert sell["fee"]["currency"] == "USDT"
    assert Decimal(str(sell["fee"]["cost"])) == (proceeds * Decimal("0.001")).quantize(
        Decimal("1e-8")
    )
    assert server.balances()["BTC"].free == Decimal("0.3999")

    fetched = exchange.fetch_balance()
    assert fetched["BTC"]["total"] == 0.3999
    assert [t.side for t in server.trades] == ["BUY", "SELL"]


def test_market_buy_by_quote_amount(server: FakeBinance, exchange: ccxt.binance) -> None:
    order = exchange.create_order(SYMBOL, "market", "buy", None, params={"quoteOrderQty": 100})
    price = Decimal(str(server.current_candle.close))
    expected_qty = (Decimal(100) / price).quantize(Decimal("0.00001"), rounding="ROUND_DOWN")
    assert Decimal(str(order["filled"])) == expected_qty
    assert server.requests_to("/api/v3/order")[-1].params["quoteOrderQty"] == "100"


def test_limit_order_rests_locks_funds_and_cancels(
    server: FakeBinance, exchange: ccxt.binance
) -> None:
    order = exchange.create_order(SYMBOL, "limit", "buy", 0.01, 1_000)
    assert order["status"] == "open"
    assert exchange.fetch_balance()["USDT"]["used"] == 10.0

    (open_order,) = exchange.fetch_open_orders(SYMBOL)
    assert open_order["id"] == order["id"] and open_order["price"] == 1_000.0
    assert exchange.fetch_order(order["id"], SYMBOL)["status"] == "open"

    cancelled = exchange.cancel_order(order["id"], SYMBOL)
    assert cancelled["status"] == "canceled"
    assert exchange.fetch_open_orders(SYMBOL) == []
    assert exchange.fetch_balance()["USDT"] == {"free": 10_000.0, "used": 0.0, "total": 10_000.0}
    with pytest.raises(ccxt.OrderNotFound):
        exchange.cancel_order(order["id"], SYMBOL)


def test_limit_order_fills_when_a_revealed_candle_crosses() -> None:
    candles = flat_candles([100.0, 100.0, 98.0, 96.0], lows=[99.0, 99.0, 97.0, 94.0])
    with FakeBinance(candles=candles, warmup=2, balances={"USDT": 1_000.0}) as srv:
        ex = ccxt_binance_for(srv)
        order = ex.create_order(SYMBOL, "limit", "buy", 1, 95)
        srv.advance()  # low 97: not yet
        assert ex.fetch_order(order["id"], SYMBOL)["status"] == "open"
        srv.advance()  # low 94: crosses 95
        filled = ex.fetch_order(order["id"], SYMBOL)
        assert filled["status"] == "closed" and filled["average"] == 95.0
        (trade,) = ex.fetch_my_trades(SYMBOL)
        assert trade["takerOrMaker"] == "maker" and trade["price"] == 95.0
        assert srv.balances()["USDT"] == Balance(free=Decimal("905"), locked=Decimal("0"))


def test_marketable_limit_fills_immediately_and_post_only_is_refused(
    server: FakeBinance, exchange: ccxt.binance
) -> None:
    price = server.current_candle.close
    order = exchange.create_order(SYMBOL, "limit", "buy", 0.01, round(price * 1.01, 2))
    assert order["status"] == "closed" and order["average"] == price
    with pytest.raises(ccxt.OrderImmediatelyFillable):
        exchange.create_order(
            SYMBOL, "limit", "buy", 0.01, round(price * 1.01, 2), {"postOnly": True}
        )


def test_fetch_my_trades_lists_fills(server: FakeBinance, exchange: ccxt.binance) -> None:
    first = exchange.create_order(SYMBOL, "market", "buy", 0.01)
    exchange.create_order(SYMBOL, "market", "sell", 0.01)

    trades = exchange.fetch_my_trades(SYMBOL)
    assert [t["side"] for t in trades] == ["buy", "sell"]
    assert trades[0]["order"] == first["id"]
    assert trades[0]["fee"]["currency"] == "BTC"
    assert trades[1]["fee"]["currency"] == "USDT"


def test_exchange_side_filters_and_balance_checks(exchange: ccxt.binance) -> None:
    with pytest.raises(ccxt.InsufficientFunds, match="insufficient balance"):
        exchange.create_order(SYMBOL, "market", "buy", 5)
    # ccxt maps -1013 to BadRequest; only LOT_SIZE/PRICE_FILTER bodies become InvalidOrder.
    with pytest.raises(ccxt.BadRequest, match="NOTIONAL"):
        exchange.create_order(SYMBOL, "market", "buy", 0.0001)


# -- authentication ----------------------------------------------------------------------------


def test_bad_signature_is_authentication_error(server: FakeBinance) -> None:
    ex = ccxt_binance_for(server, secret="not-the-secret")
    with pytest.raises(ccxt.AuthenticationError, match="Signature for this request is not valid"):
        ex.fetch_balance()
    assert server.requests_to("/api/v3/account")[-1].status == 400


def test_bad_api_key_is_authentication_error(server: FakeBinance) -> None:
    ex = ccxt_binance_for(server, api_key="not-the-key")
    with pytest.raises(ccxt.AuthenticationError, match="-2015"):
        ex.fetch_balance()
    assert server.requests_to("/api/v3/account")[-1].status == 401


def test_stale_timestamp_is_rejected(server: FakeBinance, exchange: ccxt.binance) -> None:
    exchange.options["timeDifference"] = 120_000  # ccxt signs with now - timeDifference
    with pytest.raises(ccxt.InvalidNonce, match="recvWindow"):
        exchange.fetch_balance()


def test_request_log_never_holds_secrets(server: FakeBinance, exchange: ccxt.binance) -> None:
    exchange.fetch_balance()
    exchange.create_order(SYMBOL, "market", "buy", 0.01)
    exchange.fetch_my_trades(SYMBOL)
    ccxt_binance_for(server, secret="wrong-secret").fetch_ticker(SYMBOL)

    dump = repr(server.request_log)
    assert len(server.request_log) >= 5
    assert server.api_key not in dump and server.api_secret not in dump
    assert all("signature" not in r.params for r in server.request_log)


# -- faults --------------------------------------------------------------------------------------


def test_order_rejection_faults_map_to_ccxt_errors(
    server: FakeBinance, exchange: ccxt.binance
) -> None:
    server.faults.reject_orders(times=2)
    for _ in range(2):
        with pytest.raises(ccxt.InsufficientFunds, match=INSUFFICIENT_BALANCE_MSG):
            exchange.create_order(SYMBOL, "market", "buy", 0.01)
    assert exchange.create_order(SYMBOL, "market", "buy", 0.01)["status"] == "closed"

    server.faults.reject_orders(code=-1013, msg="Filter failure: LOT_SIZE")
    with pytest.raises(ccxt.InvalidOrder, match="LOT_SIZE"):
        exchange.create_order(SYMBOL, "market", "buy", 0.01)
    # Rejections never touch reads of the same path.
    server.faults.reject_orders()
    assert exchange.fetch_open_orders(SYMBOL) == []
    assert len(server.faults.active()) == 1


def test_http_500_limited_to_path_and_times(server: FakeBinance, exchange: ccxt.binance) -> None:
    server.faults.add("http_500", path="/api/v3/klines", times=2)
    exchange.load_markets()
    assert exchange.fetch_ticker(SYMBOL)["last"] is not None
    for _ in range(2):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            exchange.fetch_ohlcv(SYMBOL, "1h")
    assert len(exchange.fetch_ohlcv(SYMBOL, "1h")) == 100
    assert [r.status for r in server.requests_to("/api/v3/klines")] == [500, 500, 200]
    assert server.faults.active() == []


def test_rate_limit_and_ban_carry_retry_after(server: FakeBinance, exchange: ccxt.binance) -> None:
    exchange.load_markets()
    server.faults.add("http_429", retry_after=7)
    # ccxt's binance raises DDoSProtection for both 418 and 429 (before RateLimitExceeded).
    with pytest.raises(ccxt.DDoSProtection):
        exchange.fetch_ticker(SYMBOL)
    assert exchange.last_response_headers["Retry-After"] == "7"

    server.faults.add("http_418")
    response = requests.get(f"{server.url}/api/v3/ping", timeout=2)
    assert response.status_code == 418 and response.headers["Retry-After"] == "1"
    assert response.json()["code"] == -1003


def test_timeout_fault_raises_request_timeout_and_is_still_processed(
    server: FakeBinance,
) -> None:
    ex = ccxt_binance_for(server, timeout=200)
    ex.load_markets()
    server.faults.add("timeout", path="/api/v3/order", delay=0.6)
    started = time.monotonic()
    with pytest.raises(ccxt.RequestTimeout):
        ex.create_order(SYMBOL, "market", "buy", 0.01)
    assert time.monotonic() - started < 0.55
    # Like a real exchange, the late order still executes: bots must reconcile, not resend.
    deadline = time.monotonic() + 2
    while not server.trades and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(server.trades) == 1


def test_malformed_json_is_not_an_exception_in_ccxt(
    server: FakeBinance, exchange: ccxt.binance
) -> None:
    exchange.load_markets()
    server.faults.add("malformed_json", path="/api/v3/ticker/24hr")
    # ccxt 4.5 returns the raw text for an unparsable 200 and parses it into an empty ticker,
    # so consumers must validate fields rather than rely on an exception.
    ticker = exchange.fetch_ticker(SYMBOL)
    assert ticker["last"] is None and ticker["timestamp"] is None
    assert exchange.fetch_ticker(SYMBOL)["last"] is not None

    server.faults.add("malformed_json", path="/api/v3/klines")
    rows = exchange.fetch_ohlcv(SYMBOL, "1h")  # parsed character by character
    assert rows[0] == [None] * 6
    assert not any(isinstance(row[0], int) and row[0] > 10**12 for row in rows)


def test_disconnect_and_offline_are_network_errors(
    server: FakeBinance, exchange: ccxt.binance
) -> None:
    exchange.load_markets()
    server.faults.add("disconnect")
    with pytest.raises(ccxt.NetworkError):
        exchange.fetch_ticker(SYMBOL)
    assert exchange.fetch_ticker(SYMBOL)["last"] is not None

    server.faults.go_offline()
    with pytest.raises(ccxt.NetworkError):
        exchange.fetch_ticker(SYMBOL)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{server.url}/api/v3/ping", timeout=1)
    server.faults.go_online()
    assert exchange.fetch_ticker(SYMBOL)["last"] is not None


def test_frozen_candles_keep_returning_the_same_last_candle(
    server: FakeBinance, exchange: ccxt.binance
) -> None:
    before = exchange.fetch_ohlcv(SYMBOL, "1h", limit=3)
    server.faults.freeze_candles()
    server.advance(5)

    assert exchange.fetch_ohlcv(SYMBOL, "1h", limit=3) == before
    # Only the kline feed is stale; prices and fills keep moving.
    assert exchange.fetch_ticker(SYMBOL)["last"] == server.current_candle.close

    server.faults.unfreeze_candles()
    assert exchange.fetch_ohlcv(SYMBOL, "1h", limit=1)[0][0] == server.current_candle.timestamp


def test_until_cleared_faults_and_clear(server: FakeBinance, exchange: ccxt.binance) -> None:
    exchange.load_markets()
    server.faults.add("http_503", path="/api/v3/ticker/24hr", times=None)
    for _ in range(3):
        with pytest.raises(ccxt.ExchangeNotAvailable):
            exchange.fetch_ticker(SYMBOL)
    assert server.faults.active()[0].hits == 3
    server.faults.freeze_candles()
    server.faults.clear()
    assert not server.faults.candles_frozen and server.faults.active() == []
    assert exchange.fetch_ticker(SYMBOL)["last"] is not None


def test_fault_api_validates_kinds() -> None:
    srv = FakeBinance()
    with pytest.raises(ValueError, match="unknown fault kind"):
        srv.faults.add("explode")
    with pytest.raises(ValueError):
        srv.faults.add("http_200")
    with pytest.raises(ValueError):
        srv.faults.add("timeout", times=0)


def test_reset_restores_initial_state(server: FakeBinance, exchange: ccxt.binance) -> None:
    exchange.create_order(SYMBOL, "market", "buy", 0.01)
    server.advance(10)
    server.faults.add("http_500", times=None)
    server.reset()

    assert server.cursor == 100 and server.trades == [] and server.orders == []
    assert server.request_log == []
    assert server.balances()["USDT"].free == Decimal("10000")
    assert exchange.fetch_ticker(SYMBOL)["last"] == server.current_candle.close
