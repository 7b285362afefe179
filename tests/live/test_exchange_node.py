"""The exchange nodes in-process: real ccxt against FakeBinance, and the replay feed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from atb_testkit import FakeBinance
from live_helpers import zigzag_candles

from atb.exchange.base import (
    ExchangeUnavailable,
    MalformedResponse,
    OrderRejected,
    validate_candles,
)
from atb.exchange.ccxt_exchange import CcxtExchange, CcxtExchangeConfig
from atb.exchange.replay import ReplayExchange, ReplayExchangeConfig
from atb.runtime.context import RunContext


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance(candles=zigzag_candles(), warmup=50) as srv:
        yield srv


def node(fake: FakeBinance, **cfg: object) -> CcxtExchange:
    config = CcxtExchangeConfig.model_validate({
        "_target_": "atb.exchange.ccxt_exchange.CcxtExchange", "base_url": fake.url,
        "api_key": fake.api_key, "api_secret": fake.api_secret, "timeout": 0.5,
        "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False,
                    "fetchMargins": False},
        "retry": {"attempts": 2, "initial": 0.01, "max": 0.05}, **cfg,
    })  # fmt: skip
    ex = CcxtExchange(config, RunContext(mode="live"))
    ex.start()
    return ex


def test_candles_are_closed_validated_and_resolved_from_the_exchange_symbol(
    fake: FakeBinance,
) -> None:
    ex = node(fake)
    assert ex.symbol == "BTC/USDT"  # run setting BTCUSDT -> ccxt's unified symbol
    frame = ex.fetch_candles(10)
    assert len(frame) == 10 and str(frame.index.tz) == "UTC"
    assert frame.index[-1].value // 1_000_000 == fake.candles[49].timestamp


def test_malformed_json_is_a_retried_failure_never_garbage(fake: FakeBinance) -> None:
    ex = node(fake)
    fake.faults.add("malformed_json", path="/api/v3/klines", times=5)
    with pytest.raises(ExchangeUnavailable, match="MalformedResponse"):
        ex.fetch_candles(5)
    assert ex.state()["consecutive_failures"] == 3  # the try and two retries
    with pytest.raises(MalformedResponse):
        validate_candles([[1, None, None, None, None, None]], 3_600_000)


def test_rejection_carries_reason_and_code_and_is_not_retried(fake: FakeBinance) -> None:
    ex = node(fake)
    fake.faults.reject_orders(code=-1013, msg="Filter failure: NOTIONAL")
    with pytest.raises(OrderRejected) as info:
        ex.market_order(1, 0.01, "atb-test-1")
    assert (info.value.code, info.value.reason) == ("-1013", "Filter failure: NOTIONAL")
    assert len(fake.requests_to("/api/v3/order")) == 1


def test_an_order_whose_answer_timed_out_is_found_not_sent_twice(fake: FakeBinance) -> None:
    ex = node(fake)
    # The fake holds the request past the client's timeout, then places the order anyway.
    fake.faults.add("timeout", path="/api/v3/order", method="POST", delay=0.8)
    result = ex.market_order(1, 0.01, "atb-test-2")
    assert result.status == "filled" and result.client_order_id == "atb-test-2"
    posts = [r for r in fake.requests_to("/api/v3/order") if r.method == "POST"]
    assert len(posts) == 1 and len(fake.orders) == 1
    assert ex.find_order("atb-never-sent") is None


def test_replay_steps_one_candle_per_poll_and_ends(tmp_path: object) -> None:
    config = ReplayExchangeConfig.model_validate({
        "_target_": "atb.exchange.replay.ReplayExchange", "start": "2025-01-19T20:00:00Z",
        "step": True,
    })  # fmt: skip
    replay = ReplayExchange(config, RunContext(mode="paper"))
    replay.start()
    seen = []
    while not replay.exhausted:
        frame = replay.fetch_candles(3)
        seen.append(frame.index[-1])
        assert replay.now_ms() == frame.index[-1].value // 1_000_000 + 3_600_000
    assert len(seen) == 5 and seen == sorted(set(seen))  # 20:00 .. the last bar, 01-20 00:00


def test_replay_clock_runs_at_speed() -> None:
    config = ReplayExchangeConfig.model_validate(
        {"_target_": "atb.exchange.replay.ReplayExchange", "speed": 36_000.0}
    )
    replay = ReplayExchange(config, RunContext(mode="paper"))
    replay.start()
    first = replay.fetch_candles(1).index[-1]
    time.sleep(0.25)  # 0.25 s × 36000 = 2.5 simulated hours
    assert replay.fetch_candles(1).index[-1] - first >= __import__("pandas").Timedelta("2h")
