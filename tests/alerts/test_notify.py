"""Notifications: one message per trade event, rate limits per route, daily summary, off in
backtests, and a paper session on the test exchange end to end."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alert_helpers import DripServer, MakeRouter, Receiver, wait_until, webhook
from pydantic import ValidationError

from atb.logging.events import log_engine_event, log_order_event
from atb.notify.config import NotifyConfig
from atb.notify.node import Notifier
from atb.runtime.context import RunContext


def notify_config(**settings: Any) -> NotifyConfig:
    return NotifyConfig.model_validate(
        {"_target_": "atb.notify.node.Notifier", "needs": ["alerts"], **settings}
    )


@pytest.fixture
def make_notifier(make_router: MakeRouter) -> Iterator[Any]:
    started: list[Notifier] = []

    def make(outputs: list[dict[str, Any]], mode: str = "paper", **settings: Any) -> Notifier:
        router = make_router([], outputs, mode=mode)
        ctx = RunContext(mode=mode, symbol="BTCUSDT", strategy="sma_crossover")
        notifier = Notifier(notify_config(**settings), ctx, alerts=router)
        notifier.start()
        started.append(notifier)
        return notifier

    yield make
    for n in started:
        n.stop()


def notes(receiver: Receiver) -> list[dict[str, Any]]:
    return [r["body"]["notification"] for r in receiver.requests if r["body"].get("notification")]


def open_trade(no: int, price: float = 30_000.0) -> None:
    log_engine_event("open_position", position_no=no, side="long", qty=0.25, entry_price=price,
                     stop_price=price * 0.98, take_price=None, reason="sma cross up")  # fmt: skip


def close_trade(no: int, exit_price: float, pnl: float) -> None:
    log_engine_event("close_position", position_no=no, side="long", qty=0.25,
                     exit_price=exit_price, pnl=pnl, exit_reason="signal")  # fmt: skip


def test_each_trade_event_is_one_notification_with_side_size_price_pnl_and_reason(
    make_notifier: Any, receiver: Receiver
) -> None:
    make_notifier([webhook(receiver.url())])
    open_trade(1)
    close_trade(1, 30_300.0, 75.0)
    # A second trade exactly like the first is a second pair of messages: no dedup.
    open_trade(2)
    close_trade(2, 30_300.0, 75.0)
    got = wait_until(lambda: len(notes(receiver)) >= 4 and notes(receiver))
    time.sleep(0.3)  # nothing more arrives
    assert [n["rule"] for n in notes(receiver)] == ["trade_opened", "trade_closed"] * 2
    opened, closed = got[0], got[1]
    assert opened["status"] == "notify" and opened["symbol"] == "BTCUSDT"
    assert opened["details"] == {"side": "long", "size": "0.25", "price": "30,000.00",
                                 "stop": "29,400.00", "reason": "sma cross up",
                                 "position": 1}  # fmt: skip
    assert closed["details"]["pnl"] == "+75.00 (+1.00%)"
    assert closed["details"]["reason"] == "signal" and closed["details"]["exit_price"] == (
        "30,300.00"
    )
    text = receiver.requests[1]["body"]["text"]
    assert text.startswith("💰 Closed long BTCUSDT: +75.00 (+1.00%): 0.25 @ 30,300.00 (signal)")


def test_a_rejection_storm_is_rate_limited_and_what_was_held_back_is_counted(
    make_notifier: Any, receiver: Receiver
) -> None:
    notifier = make_notifier(
        [webhook(receiver.url())],
        routes={"order_rejected": {"events": ["order_rejected"], "rate_limit": 3, "per": 1.0}},
    )
    for i in range(50):
        log_order_event("order_rejected", level="WARNING", side="buy", qty=0.1, kind="entry",
                        reason=f"insufficient balance #{i}", code=-2010)  # fmt: skip
    wait_until(lambda: len(notes(receiver)) >= 3)
    time.sleep(0.3)
    assert len(notes(receiver)) == 3  # the storm: 50 events, 3 messages
    assert notifier.state()["routes"]["order_rejected"]["held_back"] == 47
    # Once the window frees up, one message says how many were held back.
    held = wait_until(lambda: len(notes(receiver)) == 4 and notes(receiver)[3], timeout=5)
    assert "47 more order rejected notifications held back" in receiver.requests[3]["body"]["text"]
    assert held["details"]["held_back"] == 47
    first = notes(receiver)[0]
    assert first["details"]["reason"] == "insufficient balance #0"
    assert first["details"]["code"] == -2010


def test_a_paper_rejection_reports_why_it_was_rejected_not_why_it_was_placed(
    make_notifier: Any, receiver: Receiver
) -> None:
    make_notifier([webhook(receiver.url())])
    # The paper path's event: `reason` is the decision's, `note` the rejection's.
    log_order_event("order_rejected", side="buy", kind="entry", qty=0.0, reason="sma cross up",
                    note="no balance to size the order")  # fmt: skip
    (note,) = wait_until(lambda: notes(receiver))
    assert note["details"]["reason"] == "no balance to size the order"


def test_session_started_and_stopped_and_a_failed_stop_is_an_error(
    make_notifier: Any, receiver: Receiver
) -> None:
    make_notifier([webhook(receiver.url())])
    log_engine_event("engine_start", mode="paper", strategy="sma_crossover", symbol="BTCUSDT",
                     timeframe="1h", exchange="binance", balance=10_000.0)  # fmt: skip
    log_engine_event("engine_stop", level="ERROR", status="failed", iterations=7, trades=2,
                     balance=10_050.0, equity=10_060.0, error="LoopFailed: 5 in a row")  # fmt: skip
    got = wait_until(lambda: len(notes(receiver)) == 2 and notes(receiver))
    assert [n["rule"] for n in got] == ["session_started", "session_stopped"]
    texts = [r["body"]["text"] for r in receiver.requests]
    assert texts[0].startswith("▶️ Session started (paper): sma_crossover BTCUSDT 1h on binance")
    assert got[1]["severity"] == "error" and got[1]["details"]["error"].startswith("LoopFailed")


def test_daily_summary_at_the_configured_time(make_notifier: Any, receiver: Receiver) -> None:
    at = (datetime.now(UTC) + timedelta(seconds=2)).strftime("%H:%M:%S")
    notifier = make_notifier([webhook(receiver.url())], daily_summary={"at": at})
    log_engine_event("engine_start", balance=10_000.0)
    open_trade(1)
    close_trade(1, 30_300.0, 75.0)
    open_trade(2)
    close_trade(2, 29_700.0, -100.0)
    open_trade(3)  # still open at summary time
    summary = wait_until(
        lambda: [n for n in notes(receiver) if n["rule"] == "daily_summary"], timeout=6
    )
    (note,) = summary
    assert note["details"]["pnl"] == "-25.00" and note["details"]["trades"] == 2
    assert note["details"]["win_rate"] == "50%" and note["details"]["open_positions"] == 1
    assert note["details"]["max_drawdown"] == "0.99% (realized)"  # 10,075 → 9,975
    # The next one is a day later.
    assert notifier.state()["daily_summary"] > datetime.now(UTC).isoformat()


def test_off_in_backtests_and_without_an_external_channel(make_notifier: Any) -> None:
    with pytest.raises(ValidationError, match="backtests never notify"):
        notify_config(modes=["paper", "backtest"])
    notifier = make_notifier([], mode="paper")
    assert notifier.state()["active"] is False
    assert "no external channel" in notifier.state()["reason"]
    off = make_notifier([webhook("http://127.0.0.1:9/x")], mode="backtest")
    assert off.state()["active"] is False and "backtest" in off.state()["reason"]


def test_channels_select_which_alert_channels_notify(
    make_notifier: Any, receiver: Receiver
) -> None:
    other = Receiver()
    try:
        notifier = make_notifier(
            [webhook(receiver.url(), name="ops"), webhook(other.url(), name="trades")],
            channels=["trades"],
        )
        assert notifier.state()["channels"] == ["trades"]
        open_trade(1)
        assert wait_until(lambda: len(other.requests) == 1)
        time.sleep(0.2)
        assert receiver.requests == []
    finally:
        other.close()


def test_a_dripping_channel_does_not_slow_the_emitting_loop(make_notifier: Any) -> None:
    drip = DripServer(interval=0.5)
    try:
        notifier = make_notifier([webhook(drip.url(), timeout=1, retries=0)])
        times = []
        for i in range(200):
            t0 = time.perf_counter()
            open_trade(i)
            times.append(time.perf_counter() - t0)
        # Far below a millisecond per event while deliveries hang in the receiver.
        assert statistics.median(times) < 0.001, statistics.median(times)
        assert wait_until(lambda: drip.connections >= 1)
        # The notifier works through its inbox on its own thread: on a loaded machine the
        # last events are still queued when the first delivery connects.
        notified = wait_until(lambda: notifier.state()["counts"]["notified"] >= 20)
        assert notified and notifier.state()["counts"]["notified"] == 20  # 20 per minute
    finally:
        drip.close()


def test_status_payload_is_json_and_names_every_route(
    make_notifier: Any, receiver: Receiver
) -> None:
    notifier = make_notifier([webhook(receiver.url())])
    state = json.loads(json.dumps(notifier.state()))
    assert state["active"] is True and state["channels"] == ["webhook"]
    # /status shows it in the alerts entry, next to the channels it delivers through.
    assert notifier.router.state()["notifications"]["channels"] == ["webhook"]
    assert set(state["routes"]) == {"trade_opened", "trade_closed", "order_rejected",
                                    "session_started", "session_stopped"}  # fmt: skip
