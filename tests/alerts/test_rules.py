"""Rules in isolation: what each one matches, groups, and reports."""

from __future__ import annotations

import time
from typing import Any

from atb.alerts.rules import (
    Clear,
    EventCountRule,
    EventCountRuleConfig,
    HeartbeatSilenceRule,
    HeartbeatSilenceRuleConfig,
    JournalSpillRule,
    JournalSpillRuleConfig,
    RuleEnv,
    Trigger,
)
from atb.runtime.context import RunContext
from atb.runtime.probes import Probes


def record(name: str, level: str = "INFO", event_type: str = "order_event",
           **fields: Any) -> dict[str, Any]:  # fmt: skip
    return {"name": name, "level": level, "event_type": event_type, "message": name,
            "fields": fields, "context": {"strategy": "ml_basic"}}  # fmt: skip


def count_rule(**kw: Any) -> EventCountRule:
    cfg = EventCountRuleConfig.model_validate({"name": "r", **kw})
    return EventCountRule(cfg, RuleEnv(ctx=RunContext()))


def test_threshold_window_and_groups() -> None:
    rule = count_rule(events=["order_rejected"], group_by=["symbol"], threshold=2, window=10,
                      summary="{count} rejections for {symbol}: {reason}")  # fmt: skip
    r1 = record("order_rejected", symbol="BTC", reason="balance")
    assert rule.wants(r1) and not rule.wants(record("order_filled"))
    assert rule.observe(r1, 0) == []
    (signal,) = rule.observe(r1, 1)
    assert isinstance(signal, Trigger)
    obs = signal.observation
    assert obs.key == "symbol=BTC" and obs.symbol == "BTC" and obs.count == 2
    assert obs.summary == "2 rejections for BTC: balance"
    assert rule.observe(record("order_rejected", symbol="ETH"), 2) == []  # its own window
    assert set(rule.poll(5)) == {"symbol=BTC"}
    assert rule.poll(10.5) == {}  # the first event left the window


def test_where_min_level_and_event_types() -> None:
    rule = count_rule(event_types=["engine_event"], min_level="ERROR",
                      where={"reason": "too many errors"})  # fmt: skip
    crash = record("engine_stop", "ERROR", "engine_event", reason="too many errors")
    assert rule.wants(crash)
    assert not rule.wants(record("engine_stop", "INFO", "engine_event", reason="too many errors"))
    assert not rule.wants(record("engine_stop", "ERROR", "data_event", reason="too many errors"))
    assert not rule.wants(record("engine_stop", "ERROR", "engine_event", reason="done"))
    assert rule.interest().min_levelno == 40
    alert_record = {**crash, "event_type": "alert_event"}
    assert not rule.wants(alert_record)  # never alert on alerts


def test_clear_on_ends_the_condition() -> None:
    rule = count_rule(events=["db_connection_failed"], clear_on=["db_connected"], window=60)
    assert isinstance(rule.observe(record("db_connection_failed"), 0)[0], Trigger)
    (signal,) = rule.observe(record("db_connected"), 1)
    assert isinstance(signal, Clear) and rule.poll(2) == {}


def test_group_count_is_bounded() -> None:
    rule = count_rule(events=["x"], group_by=["order_id"], max_groups=3)
    for i in range(10):
        rule.observe(record("x", order_id=i), i)
    assert len(rule.poll(10)) == 3


def test_heartbeat_silence() -> None:
    probes = Probes()
    ctx = RunContext(probes=probes)
    rule = HeartbeatSilenceRule(
        HeartbeatSilenceRuleConfig.model_validate({"silence": None, "startup_grace": 0}),
        RuleEnv(ctx=ctx),
    )
    assert rule.poll(0) == {}  # no loop in this run
    probes.heartbeat.start(interval=0.02)
    assert rule.limit() == 2.0  # 3 × the loop's interval, floored at MIN_SILENCE
    probes.heartbeat.beat()
    assert rule.poll(0) == {}
    time.sleep(0.08)
    # 4 × interval without a beat at a 0.02 s interval is one slow iteration, not a stall
    # (live.check_interval=0.05 used to raise a loop_stalled alert that resolved itself).
    assert rule.poll(0) == {}
    probes.heartbeat.interval = 1.0
    assert rule.limit() == 3.0  # 3 × the loop's interval above the floor
    probes.heartbeat.last_pulse = time.monotonic() - 3.5
    (obs,) = rule.poll(0).values()
    assert "no heartbeat" in obs.summary and obs.details["silence_limit_seconds"] == 3.0
    ctx.stop_event.set()
    assert rule.poll(0) == {}  # a loop that is stopping did not stall


def test_heartbeat_silence_respects_cooldowns_and_the_end_of_the_loop() -> None:
    probes = Probes()
    rule = HeartbeatSilenceRule(
        HeartbeatSilenceRuleConfig.model_validate({"silence": None, "startup_grace": 0}),
        RuleEnv(ctx=RunContext(probes=probes)),
    )
    probes.heartbeat.start(interval=1.0)
    probes.heartbeat.fail("exchange unreachable")
    probes.heartbeat.expect(20.0)  # the loop's failure cooldown
    probes.heartbeat.last_pulse = time.monotonic() - 10
    assert rule.poll(0) == {}  # waiting out a cooldown is not a stall
    probes.heartbeat.last_pulse = time.monotonic() - 30
    assert rule.poll(0) != {}
    probes.heartbeat.stop("finished")
    assert rule.poll(0) == {}  # a loop that ended did not stall


def test_heartbeat_never_beating_after_start_is_a_stall() -> None:
    probes = Probes()
    rule = HeartbeatSilenceRule(
        HeartbeatSilenceRuleConfig.model_validate({"silence": 0.01, "startup_grace": 0.01}),
        RuleEnv(ctx=RunContext(probes=probes)),
    )
    probes.heartbeat.start()
    assert rule.poll(0) == {}
    time.sleep(0.05)
    (obs,) = rule.poll(0).values()
    assert "has not beaten once" in obs.summary


def test_journal_spill_reads_the_published_state() -> None:
    probes = Probes()
    state: dict[str, Any] = {"db_available": True, "spill_pending": 0, "last_error": None}
    probes.register("journal", lambda: dict(state))
    rule = JournalSpillRule(JournalSpillRuleConfig.model_validate({}),
                            RuleEnv(ctx=RunContext(probes=probes)))  # fmt: skip
    assert rule.poll(0) == {}
    state.update(db_available=False, spill_pending=12, spill_path="/tmp/spill.jsonl",
                 last_error="database unavailable: connection refused")  # fmt: skip
    (obs,) = rule.poll(0).values()
    assert "database unavailable" in obs.summary and "12 pending" in obs.summary
    assert obs.details["spill_pending"] == 12
    state.update(db_available=True)  # back, still replaying
    assert "await replay" in next(iter(rule.poll(0).values())).summary
    state.update(spill_pending=0)
    assert rule.poll(0) == {}
