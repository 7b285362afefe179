"""The de-duplication / re-notification / resolution state machine, on explicit clocks."""

from __future__ import annotations

from atb.alerts.incidents import IncidentBook, Outcome
from atb.alerts.model import Observation
from atb.alerts.rules import (
    EventCountRule,
    EventCountRuleConfig,
    HeartbeatSilenceRule,
    HeartbeatSilenceRuleConfig,
    RuleEnv,
)
from atb.runtime.context import RunContext

ENV = RuleEnv(ctx=RunContext(mode="paper"))


def rule(**kw: object) -> EventCountRule:
    cfg = EventCountRuleConfig.model_validate({
        "name": "r", "events": ["x"], "dedup_window": 10, "renotify_interval": 30,
        "clear_after": 2, **kw,
    })  # fmt: skip
    return EventCountRule(cfg, ENV)


def obs(key: str = "symbol=BTCUSDT") -> Observation:
    return Observation(key, "3 rejections", {"n": 3}, "BTCUSDT", 3)


def actions(outcomes: list[Outcome]) -> list[str]:
    return [f"{o.action}:{o.notification.status}" for o in outcomes]


def test_first_trigger_notifies_then_duplicates_are_suppressed() -> None:
    book, r = IncidentBook(run_id="run1", mode="paper"), rule()
    assert actions(book.trigger(r, obs(), 0, 1000)) == ["notify:firing"]
    assert actions(book.trigger(r, obs(), 1, 1001)) == ["suppressed:firing"]
    assert actions(book.tick(r, {"symbol=BTCUSDT": obs()}, 5, 1005)) == []
    inc = book.open[("r", "symbol=BTCUSDT")]
    assert inc.count == 4 and inc.suppressed == 1


def test_reminder_after_the_renotify_interval_while_still_active() -> None:
    book, r = IncidentBook(), rule()
    book.trigger(r, obs(), 0, 0)
    assert book.tick(r, {"symbol=BTCUSDT": obs()}, 29, 29) == []
    (out,) = book.tick(r, {"symbol=BTCUSDT": obs()}, 30, 30)
    assert out.action == "notify" and out.notification.reminder
    assert book.tick(r, {"symbol=BTCUSDT": obs()}, 31, 31) == []


def test_resolution_after_clear_after_of_quiet() -> None:
    book, r = IncidentBook(), rule()
    book.trigger(r, obs(), 0, 0)
    assert book.tick(r, {}, 1, 1) == []  # condition false: the clear_after clock starts
    assert book.tick(r, {}, 2.5, 2.5) == []
    (out,) = book.tick(r, {}, 3, 3)
    assert (out.action, out.notification.status) == ("notify", "resolved")
    assert not book.open


def test_flapping_within_the_dedup_window_is_suppressed_then_sent_late() -> None:
    book, r = IncidentBook(), rule(clear_after=0)
    book.trigger(r, obs(), 0, 0)
    assert actions(book.tick(r, {}, 1, 1)) == ["notify:resolved"]
    assert actions(book.trigger(r, obs(), 2, 2)) == ["suppressed:firing"]
    assert book.tick(r, {"symbol=BTCUSDT": obs()}, 5, 5) == []
    # still firing once the window has passed: the operator hears about it now
    assert actions(book.tick(r, {"symbol=BTCUSDT": obs()}, 10, 10)) == ["notify:firing"]


def test_unnotified_incident_resolves_silently() -> None:
    book, r = IncidentBook(), rule(clear_after=0)
    book.trigger(r, obs(), 0, 0)
    book.tick(r, {}, 1, 1)
    book.trigger(r, obs(), 2, 2)
    assert actions(book.tick(r, {}, 3, 3)) == ["suppressed:resolved"]


def test_keys_are_independent() -> None:
    book, r = IncidentBook(), rule()
    assert actions(book.trigger(r, obs("symbol=BTCUSDT"), 0, 0)) == ["notify:firing"]
    assert actions(book.trigger(r, obs("symbol=ETHUSDT"), 0, 0)) == ["notify:firing"]


def test_clear_event_resolves_at_once() -> None:
    book, r = IncidentBook(), rule(clear_after=100)
    book.trigger(r, obs(), 0, 0)
    assert actions(book.clear(r, "symbol=BTCUSDT", 1, 1)) == ["notify:resolved"]


def test_level_triggered_rules_open_incidents_from_poll() -> None:
    cfg = HeartbeatSilenceRuleConfig.model_validate({"silence": 1, "clear_after": 0})
    hb = HeartbeatSilenceRule(cfg, ENV)
    book = IncidentBook()
    state = {"": Observation("", "stalled", {}, None)}
    assert actions(book.tick(hb, state, 0, 0)) == ["notify:firing"]
    assert book.tick(hb, state, 1, 1) == []  # still silent: no duplicate per tick
    assert actions(book.tick(hb, {}, 2, 2)) == ["notify:resolved"]


def test_payload_shape() -> None:
    book, r = IncidentBook(run_id="abc123", mode="live", strategy="ml_basic"), rule()
    (out,) = book.trigger(r, obs(), 0, 1_700_000_000)
    payload = out.notification.payload()
    assert set(payload) >= {"text", "alert"}
    alert = payload["alert"]
    for key in (
        "rule",
        "severity",
        "status",
        "summary",
        "details",
        "first_seen",
        "last_seen",
        "count",
        "run_id",
        "mode",
        "strategy",
        "symbol",
    ):
        assert key in alert
    assert alert["status"] == "firing" and alert["symbol"] == "BTCUSDT"
    assert alert["first_seen"].startswith("2023-11-14T22:13:20")
    assert "FIRING" in payload["text"] and "3 rejections" in payload["text"]
