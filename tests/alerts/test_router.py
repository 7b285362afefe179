"""The router end to end in-process: real events through atb.logging, a real HTTP receiver.

Windows and intervals are fractions of a second so every rule fires, re-notifies and
resolves within the test's time budget.
"""

from __future__ import annotations

import itertools
import statistics
import time
from typing import Any

from alert_helpers import (
    FakeJournal,
    MakeRouter,
    Receiver,
    closed_port_url,
    count_rule,
    wait_until,
    webhook,
)
from loguru import logger

from atb.logging.events import log_data_event, log_engine_event, log_order_event
from atb.logging.hooks import add_record_listener


def reject(n: int, symbol: str = "BTCUSDT") -> None:
    for _ in range(n):
        log_order_event(
            "order_rejected", level="WARNING", symbol=symbol, reason="insufficient balance",
            code=-2010,
        )  # fmt: skip


def test_repeated_rejections_notify_once_per_firing_then_resolve(
    make_router: MakeRouter, receiver: Receiver
) -> None:
    journal = FakeJournal()
    make_router(
        [count_rule(window=0.4, dedup_window=5, renotify_interval=None)],
        [webhook(receiver.url(), headers={"Authorization": "Bearer hdr-s3cret"})],
        journal=journal,
    )
    reject(2)
    time.sleep(0.15)
    assert receiver.requests == []  # below the threshold
    reject(1)
    (first,) = receiver.wait_for(1)
    reject(5)  # still firing: duplicates inside the dedup window
    resolved = wait_until(lambda: [a for a in receiver.alerts if a["status"] == "resolved"])
    assert resolved, receiver.requests
    firing = [a for a in receiver.alerts if a["status"] == "firing"]
    assert len(firing) == 1, firing

    body = first["body"]
    alert = body["alert"]
    assert "FIRING" in body["text"] and "repeated_order_rejections" in body["text"]
    assert alert["rule"] == "repeated_order_rejections" and alert["severity"] == "critical"
    assert alert["symbol"] == "BTCUSDT" and alert["mode"] == "paper"
    assert alert["strategy"] == "ml_basic" and alert["count"] == 3 and alert["run_id"]
    assert alert["details"]["last_event"]["fields"]["reason"] == "insufficient balance"
    assert first["headers"]["Authorization"] == "Bearer hdr-s3cret"
    assert first["headers"]["Content-Type"] == "application/json"
    assert "hdr-s3cret" not in str(body) and "s3cr3t-token" not in str(body)
    assert resolved[0]["count"] == 8

    # system_events: one row per notification, duplicates recorded as suppressed
    rows = wait_until(lambda: len(journal.alerts("alert_resolved")) == 1 and journal.events)
    assert rows
    sent = [e for e in journal.events if e["alert_method"] == "webhook"]
    assert [e["name"] for e in sent] == ["alert_firing", "alert_resolved"]
    assert all(e["alert_sent"] is True and e["event_type"] == "ALERT" for e in sent)
    suppressed = [e for e in journal.events if e["alert_method"] == "suppressed"]
    assert len(suppressed) == 5 and not any(e["alert_sent"] for e in suppressed)
    assert sent[0]["severity"] == "CRITICAL" and sent[0]["context"]["symbol"] == "BTCUSDT"
    assert sent[0]["details"]["delivery"]["webhook"]["status"] == "sent"


def test_renotify_after_the_interval_while_still_firing(
    make_router: MakeRouter, receiver: Receiver
) -> None:
    make_router(
        [count_rule(window=1.0, dedup_window=0.3, renotify_interval=0.3)],
        [webhook(receiver.url())],
    )
    reject(3)
    receiver.wait_for(1)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # keep the condition true past the interval
        reject(1)
        time.sleep(0.05)
    requests = receiver.requests
    assert requests[0]["body"]["alert"]["reminder"] is False
    reminders = [r for r in requests[1:] if r["body"]["alert"]["reminder"]]
    assert len(reminders) == len(requests) - 1 >= 1, requests
    assert "STILL FIRING" in reminders[0]["body"]["text"]
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(requests)]
    assert min(gaps) >= 0.25  # never more often than the interval (0.3 s, tick 0.05 s)


def test_groups_fire_independently(make_router: MakeRouter, receiver: Receiver) -> None:
    make_router([count_rule()], [webhook(receiver.url())])
    reject(3, "BTCUSDT")
    reject(3, "ETHUSDT")
    requests = receiver.wait_for(2)
    assert sorted(r["body"]["alert"]["symbol"] for r in requests) == ["BTCUSDT", "ETHUSDT"]


def test_stale_data_fires_and_resolves(make_router: MakeRouter, receiver: Receiver) -> None:
    rule = {
        "_target_": "atb.alerts.rules.EventCountRule", "name": "stale_data",
        "events": ["stale_data", "no_data"], "group_by": ["symbol"], "threshold": 1,
        "window": 0.3, "severity": "warning",
    }  # fmt: skip
    make_router([rule], [webhook(receiver.url())])
    log_data_event("stale_data", level="WARNING", symbol="BTCUSDT", age_seconds=7300)
    log_data_event("no_data", level="WARNING", symbol="BTCUSDT")
    expected = ["firing", "resolved"]
    assert wait_until(lambda: [a["status"] for a in receiver.alerts] == expected), receiver.alerts
    assert len(receiver.alerts) == 2
    assert receiver.alerts[0]["severity"] == "warning"


def test_loop_stalled_fires_and_resolves_when_the_heartbeat_returns(
    make_router: MakeRouter, receiver: Receiver
) -> None:
    rule = {"_target_": "atb.alerts.rules.HeartbeatSilenceRule", "silence": 0.2,
            "startup_grace": 0, "renotify_interval": None}  # fmt: skip
    router = make_router([rule], [webhook(receiver.url())])
    router.ctx.probes.heartbeat.start(interval=0.05)
    for _ in range(5):
        router.ctx.probes.heartbeat.beat()
        time.sleep(0.05)
    assert receiver.requests == []
    (fired,) = receiver.wait_for(1)  # the loop stops beating
    alert = fired["body"]["alert"]
    assert alert["rule"] == "loop_stalled" and alert["severity"] == "critical"
    assert "no heartbeat" in alert["summary"]
    assert router.state()["firing"][0]["rule"] == "loop_stalled"
    router.ctx.probes.heartbeat.beat()
    requests = receiver.wait_for(2)
    assert [r["body"]["alert"]["status"] for r in requests] == ["firing", "resolved"]
    assert len(receiver.wait_for(3, timeout=0.4)) == 2  # one firing per stall, not per tick


def test_engine_crash_event_is_delivered_even_as_the_run_stops(
    make_router: MakeRouter, receiver: Receiver
) -> None:
    rule = {
        "_target_": "atb.alerts.rules.EventCountRule",
        "name": "engine_crashed",
        "event_types": ["engine_event"],
        "min_level": "ERROR",
        "severity": "critical",
    }
    router = make_router([rule], [webhook(receiver.url())], tick=5)
    log_engine_event("heartbeat")  # INFO: not a crash
    log_engine_event("engine_stop", level="ERROR", reason="too many consecutive errors", errors=10)
    router.ctx.stop_event.set()
    router.stop()  # right away, as the runner does after the main node fails
    (crash,) = receiver.requests
    assert crash["body"]["alert"]["rule"] == "engine_crashed"
    assert "engine_stop" in crash["body"]["alert"]["summary"]


def test_receiver_down_records_failures_opens_the_circuit_and_shows_in_status(
    make_router: MakeRouter,
) -> None:
    journal = FakeJournal()
    events: list[dict[str, Any]] = []
    remove = add_record_listener(lambda r: events.append(r) if r.get("name") else None)
    try:
        router = make_router(
            [count_rule(threshold=1, dedup_window=0, window=0.05)],
            [webhook(closed_port_url(), retries=2, backoff=0.01, breaker_threshold=2)],
            journal=journal,
        )
        reject(1, "A")
        reject(1, "B")
        rows = wait_until(lambda: len(journal.alerts("alert_firing")) >= 2 and journal.events)
        assert rows
        firing = journal.alerts("alert_firing")
        assert all(e["alert_sent"] is False for e in firing)
        assert all(e["alert_method"] == "failed:webhook" for e in firing)
        delivery = firing[0]["details"]["delivery"]["webhook"]
        assert delivery["status"] == "failed" and delivery["attempts"] == 3  # 1 + 2 retries
        assert "Connection" in delivery["error"] or "refused" in delivery["error"]

        down = wait_until(lambda: [e for e in events if e["name"] == "alert_channel_down"])
        assert down and down[0]["level"] == "ERROR" and down[0]["fields"]["channel"] == "webhook"
        status = router.ctx.probes.read("alerts")
        assert status is not None
        channel = status["channels"]["webhook"]
        assert channel["state"] == "down" and channel["healthy"] is False
        assert status["status"] == "degraded" and channel["failed"] >= 2
        assert "s3cr3t" not in str(status)

        # circuit open: the next alert fails fast, without waiting through retries
        reject(1, "C")
        fast = wait_until(lambda: len(journal.alerts("alert_firing")) >= 3)
        assert fast
        third = journal.alerts("alert_firing")[2]["details"]["delivery"]["webhook"]
        assert third["attempts"] == 0 and "circuit open" in third["error"]
        assert router.state()["channels"]["log"]["state"] == "ok"
    finally:
        remove()


def test_slow_or_failing_receiver_never_slows_the_loop(
    make_router: MakeRouter, receiver: Receiver
) -> None:
    """The emitting thread's cost per event is the same with a receiver that hangs."""

    def loop_times(n: int) -> list[float]:
        times = []
        for i in range(n):
            t0 = time.perf_counter()
            log_order_event("order_rejected", symbol=f"S{i % 7}", reason="x")
            times.append(time.perf_counter() - t0)
        return times

    receiver.mode = "ok"
    make_router([count_rule(threshold=1, dedup_window=0, window=0.01)],
                [webhook(receiver.url(), timeout=2, retries=0)])  # fmt: skip
    baseline = loop_times(300)
    receiver.mode, receiver.delay = "slow", 1.0
    slow = loop_times(300)
    assert receiver.wait_for(1)
    # Deliveries are hanging in the receiver while the loop keeps its pace.
    assert statistics.median(slow) < max(5 * statistics.median(baseline), 0.0005)
    # No event waited for a delivery (each hangs 1 s); the margin absorbs a loaded machine's
    # scheduling pauses, which are not what this test is about.
    assert max(slow) < receiver.delay / 2


def test_slow_receiver_times_out_and_is_retried(
    make_router: MakeRouter, receiver: Receiver
) -> None:
    journal = FakeJournal()
    receiver.mode, receiver.delay = "slow", 1.0
    make_router([count_rule(threshold=1)],
                [webhook(receiver.url(), timeout=0.2, retries=1, backoff=0.01)],
                journal=journal)  # fmt: skip
    reject(1)
    (row,) = wait_until(lambda: journal.alerts("alert_firing"))
    assert row["alert_sent"] is False and row["alert_method"] == "failed:webhook"
    assert row["details"]["delivery"]["webhook"]["attempts"] == 2
    assert "timed out" in row["details"]["delivery"]["webhook"]["error"]
    # Two attempts at the firing alert (a loaded machine may already be sending its
    # resolution, which is not what this test counts).
    firing = [r for r in receiver.requests if r["body"]["alert"]["status"] == "firing"]
    assert len(firing) == 2


def test_http_500_is_retried_and_400_is_not(make_router: MakeRouter, receiver: Receiver) -> None:
    journal = FakeJournal()
    receiver.mode = "500"
    make_router([count_rule(threshold=1)],
                [webhook(receiver.url(), retries=2, backoff=0.01, breaker_threshold=10)],
                journal=journal)  # fmt: skip
    reject(1, "A")
    (row,) = wait_until(lambda: journal.alerts("alert_firing"))
    assert row["details"]["delivery"]["webhook"]["error"].startswith("HTTP 500")
    assert len(receiver.requests) == 3
    receiver.mode = "400"
    reject(1, "B")
    assert wait_until(lambda: len(journal.alerts("alert_firing")) == 2)

    def attempts_for_b() -> int:
        groups = [r["body"]["alert"]["details"].get("group") for r in receiver.requests]
        return groups.count("symbol=B")

    assert wait_until(lambda: attempts_for_b() >= 1)
    time.sleep(0.3)  # a retry (backoff 0.01 s) would have arrived by now
    assert attempts_for_b() == 1  # one attempt: a 4xx will not get better


def test_recovered_receiver_closes_the_circuit(make_router: MakeRouter, receiver: Receiver) -> None:
    receiver.mode = "500"
    router = make_router(
        [count_rule(threshold=1, dedup_window=0, window=0.05)],
        [webhook(receiver.url(), retries=0, breaker_threshold=1, breaker_cooldown=0.2)],
    )
    reject(1, "A")
    assert wait_until(lambda: router.state()["channels"]["webhook"]["circuit"] == "open")
    receiver.mode = "ok"
    time.sleep(0.25)
    reject(1, "B")
    assert wait_until(lambda: router.state()["channels"]["webhook"]["circuit"] == "closed")
    assert receiver.alerts[-1]["symbol"] == "B"


def test_live_run_without_external_channel_warns_loudly(make_router: MakeRouter) -> None:
    seen: list[Any] = []
    handler = logger.add(seen.append, level="WARNING", format="{level}|{message}")
    try:
        make_router([count_rule()], [{"_target_": "atb.alerts.channels.WebhookChannel"}],
                    mode="live")  # fmt: skip
    finally:
        logger.remove(handler)
    warnings = [str(m) for m in seen if "WITHOUT AN EXTERNAL ALERT CHANNEL" in str(m)]
    assert warnings and warnings[0].startswith("WARNING|")


def test_inactive_outside_its_modes(make_router: MakeRouter, receiver: Receiver) -> None:
    router = make_router([count_rule(threshold=1)], [webhook(receiver.url())], mode="backtest")
    reject(3)
    time.sleep(0.1)
    assert receiver.requests == []
    assert router.state()["status"] == "inactive"


def test_status_lists_rules_channels_and_firing(
    make_router: MakeRouter, receiver: Receiver
) -> None:
    router = make_router([count_rule(window=5)], [webhook(receiver.url())])
    reject(3)
    receiver.wait_for(1)
    state = router.ctx.probes.read("alerts")
    assert state is not None and state is not router  # a snapshot dict
    assert state["status"] == "ok" and state["external_channels"] == ["webhook"]
    assert [r["name"] for r in state["rules"]] == ["repeated_order_rejections"]
    assert state["firing"][0]["key"] == "symbol=BTCUSDT"
    assert state["channels"]["webhook"]["target"] == f"http://127.0.0.1:{receiver.port}/…"
    assert wait_until(lambda: router.ctx.probes.read("alerts")["counts"]["sent"] == 1)  # type: ignore[index]
