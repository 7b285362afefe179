from __future__ import annotations

import threading
from typing import Any

from loguru import logger

from atb.logging import context as ctxmod
from atb.logging.context import (
    ContextThread,
    clear_context,
    get_context,
    set_context,
    set_run_context,
    spawn,
    update_context,
    use_context,
)
from atb.logging.events import (
    log_alert_event,
    log_data_event,
    log_db_event,
    log_decision_event,
    log_engine_event,
    log_order_event,
    log_risk_event,
)
from atb.logging.hooks import add_record_listener


def test_context_api() -> None:
    set_context(component="engine", strategy="ml_basic")
    update_context(symbol="BTCUSDT", strategy=None)  # None ignored by update
    assert get_context() == {"component": "engine", "strategy": "ml_basic", "symbol": "BTCUSDT"}
    set_context(strategy=None)  # None removes with set
    with use_context(session_id=42) as inside:
        assert inside["session_id"] == 42
        with use_context(component="risk"):
            assert get_context()["component"] == "risk"
        assert get_context()["component"] == "engine"
    assert "session_id" not in get_context()
    clear_context("symbol")
    assert get_context() == {"component": "engine"}
    clear_context()
    assert get_context() == {}


def test_context_reaches_records_and_threads(outputs: Any) -> None:
    outputs.configure()
    set_run_context(run_id="run-1", mode="paper", strategy="ml_basic", symbol="BTCUSDT")
    set_context(component="engine", session_id=9)
    seen: list[dict[str, Any]] = []

    def live_loop() -> None:
        seen.append(get_context())
        log_engine_event("heartbeat", step=10)

    def plain() -> None:
        seen.append(get_context())

    with outputs.capture():
        logger.info("main thread")
        t = ContextThread(target=live_loop, name="live")
        t.start()
        t.join()
        spawn(lambda: logger.info("journal"), component="journal").join()
        p = threading.Thread(target=plain)  # a thread atb did not start: run layer only
        p.start()
        p.join()
    assert seen[0]["component"] == "engine" and seen[0]["session_id"] == 9
    assert seen[1] == {
        "run_id": "run-1",
        "mode": "paper",
        "strategy": "ml_basic",
        "symbol": "BTCUSDT",
    }
    lines = outputs.json_lines()
    for line in lines:
        assert line["run_id"] == "run-1" and line["strategy"] == "ml_basic"
        assert line["symbol"] == "BTCUSDT" and line["session_id"] == 9
    assert [line["component"] for line in lines] == ["engine", "engine", "journal"]
    assert "session_id=9" in outputs.texts()["console"]


def test_context_cache_sees_changes() -> None:
    set_context(a=1)
    first = ctxmod.current()
    assert ctxmod.current() is first
    set_run_context(mode="live")
    assert ctxmod.current()["mode"] == "live"


def test_event_emitters(outputs: Any) -> None:
    outputs.configure(level="INFO")
    got: list[dict[str, Any]] = []
    remove = add_record_listener(got.append)
    with outputs.capture():
        log_engine_event("engine_start", mode="backtest")
        log_order_event(
            "order_rejected", symbol="ETHUSDT", reason="insufficient balance", level="WARNING"
        )
        log_risk_event("max_drawdown_breach", drawdown=0.21, message="drawdown 21% > 20%")
        log_data_event("stale_data", age_s=120)
        log_db_event("db_connected")
        log_decision_event("signal", confidence=0.7)
        log_alert_event("repeated_rejections", count=5)
        log_engine_event("tick", level="DEBUG")  # below INFO: sinks skip, journal gets it
        logger.info("plain info")  # not an event and not a warning: no listener call
        logger.warning("plain warning")
    remove()
    lines = outputs.json_lines()
    types = [(line["event_type"], line.get("event")) for line in lines]
    assert types == [
        ("engine_event", "engine_start"),
        ("order_event", "order_rejected"),
        ("risk_event", "max_drawdown_breach"),
        ("data_event", "stale_data"),
        ("db_event", "db_connected"),
        ("decision_event", "signal"),
        ("alert_event", "repeated_rejections"),
        (None, None),
        (None, None),
    ]
    rejected = lines[1]
    assert rejected["level"] == "WARNING" and rejected["reason"] == "insufficient balance"
    assert rejected["symbol"] == "ETHUSDT"
    assert rejected["logger"] == __name__ and rejected["function"] == "test_event_emitters"
    assert lines[2]["message"] == "drawdown 21% > 20%" and lines[2]["drawdown"] == 0.21
    assert set(lines[0]) >= {"timestamp", "level", "logger", "message", "event_type"}
    assert lines[0]["timestamp"].endswith("Z")
    names = [r["name"] for r in got]
    assert names == [
        "engine_start",
        "order_rejected",
        "max_drawdown_breach",
        "stale_data",
        "db_connected",
        "signal",
        "repeated_rejections",
        "tick",
        None,
    ]
    rec = got[1]
    assert set(rec) == {
        "id",
        "timestamp",
        "level",
        "logger",
        "message",
        "event_type",
        "name",
        "fields",
        "context",
        "exception",
    }
    assert rec["fields"] == {"symbol": "ETHUSDT", "reason": "insufficient balance"}
    assert rec["timestamp"].tzinfo is not None and len(rec["id"]) == 36


def test_field_named_like_schema_key_is_kept_apart(outputs: Any) -> None:
    outputs.configure()
    with outputs.capture():
        log_order_event("x", level="INFO", logger_name="a", timestamp_ms=1, **{"line": 5})
    line = outputs.json_lines()[0]
    assert line["field_line"] == 5 and isinstance(line["line"], int)


def test_listener_failure_reported_once(outputs: Any) -> None:
    outputs.configure()

    def broken(record: dict[str, Any]) -> None:
        raise RuntimeError("journal down")

    remove = add_record_listener(broken)
    with outputs.capture():
        for _ in range(3):
            log_order_event("order_filled", qty=1)
    remove()
    console = outputs.texts()["console"]
    assert console.count("journal down") == 1
    assert console.count("order_filled") == 3


def test_filtered_event_is_cheap_and_silent(outputs: Any) -> None:
    outputs.configure(level="WARNING")
    with outputs.capture():
        log_engine_event("heartbeat", level="DEBUG")
        logger.debug("nope")
    assert outputs.stdout.getvalue() == ""
