"""Alerts against a real database: rows in system_events, and the database itself going down."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alert_helpers import MakeRouter, Receiver, count_rule, wait_until, webhook
from atb_testkit.pgtemp import TempPostgres, find_pg_bin
from sqlalchemy import text

from atb.db.journal import Journal, JournalConfig
from atb.db.node import Database, DatabaseConfig
from atb.logging.events import log_order_event
from atb.runtime.context import RunContext


def start_journal(url: str, tmp_path: Path, **settings: Any) -> tuple[Database, Journal]:
    ctx = RunContext(mode="paper", output_dir=tmp_path)
    db = Database(DatabaseConfig.model_validate({"_target_": "atb.db.node.Database", "url": url}),
                  ctx)  # fmt: skip
    db.start()
    config = JournalConfig.model_validate({
        "_target_": "atb.db.journal.Journal", "flush_interval": 0.05,
        "spill_path": str(tmp_path / "spill.jsonl"), **settings,
    })  # fmt: skip
    journal = Journal(config, ctx, db)
    journal.start()
    return db, journal


def alert_rows(db: Database) -> list[dict[str, Any]]:
    with db.engine.connect() as conn:
        result = conn.execute(text(
            "SELECT event_type, name, severity, alert_sent, alert_method, symbol, message "
            "FROM system_events WHERE event_type = 'ALERT' ORDER BY timestamp, id"
        ))  # fmt: skip
        return [dict(row._mapping) for row in result]


def test_every_alert_is_one_system_events_row_with_its_outcome(
    make_router: MakeRouter, receiver: Receiver, tmp_path: Path
) -> None:
    db, journal = start_journal(f"sqlite:///{tmp_path / 'atb.db'}", tmp_path)
    try:
        # Rows wait for their delivery outcome (a loaded machine must not turn them into
        # pending rows plus alert_delivery rows; that path has its own tests).
        router = make_router([count_rule(window=0.3)], [webhook(receiver.url())],
                             journal=journal, record_delay=30)  # fmt: skip
        for _ in range(5):
            log_order_event("order_rejected", symbol="BTCUSDT", reason="min notional")
        assert wait_until(lambda: len(receiver.alerts) == 2)  # firing, then resolved
        # The receiver has both before the router has heard back from the second: wait for
        # the outcome too, or a loaded machine stops the router with that row still pending.
        assert wait_until(lambda: router.state()["counts"].get("sent", 0) == 2)
        router.stop()
        assert journal.flush(5)
        rows = alert_rows(db)
    finally:
        journal.stop()
        db.stop()
    outcome = [(r["name"], bool(r["alert_sent"]), r["alert_method"]) for r in rows]
    assert outcome == [
        ("alert_firing", True, "webhook"),
        ("alert_firing", False, "suppressed"),
        ("alert_firing", False, "suppressed"),
        ("alert_resolved", True, "webhook"),
    ]
    assert rows[0]["severity"] == "CRITICAL" and rows[0]["symbol"] == "BTCUSDT"
    assert "repeated_order_rejections" in rows[0]["message"]


def test_failed_delivery_is_recorded_as_failed(
    make_router: MakeRouter, receiver: Receiver, tmp_path: Path
) -> None:
    receiver.mode = "500"
    db, journal = start_journal(f"sqlite:///{tmp_path / 'atb.db'}", tmp_path)
    try:
        router = make_router([count_rule(threshold=1, window=5)],
                             [webhook(receiver.url(), retries=1, backoff=0.01)],
                             journal=journal)  # fmt: skip
        log_order_event("order_rejected", symbol="ETHUSDT", reason="x")
        assert wait_until(lambda: router.state()["counts"]["failed"] == 1)
        router.stop()
        assert journal.flush(5)
        (row,) = alert_rows(db)
    finally:
        journal.stop()
        db.stop()
    assert row["alert_sent"] in (False, 0) and row["alert_method"] == "failed:webhook"
    assert len(receiver.requests) == 2  # retried once


@pytest.fixture
def postgres() -> Iterator[TempPostgres]:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    with TempPostgres() as pg:
        yield pg


@pytest.mark.postgres
def test_database_down_fires_journal_spilling_and_resolves_when_it_returns(
    make_router: MakeRouter, receiver: Receiver, tmp_path: Path, postgres: TempPostgres
) -> None:
    url = postgres.create_database()
    db, journal = start_journal(url, tmp_path, retry_initial=0.05, retry_max=0.2)
    try:
        rule = {"_target_": "atb.alerts.rules.JournalSpillRule", "clear_after": 0.2,
                "renotify_interval": None}  # fmt: skip
        make_router([rule], [webhook(receiver.url())], journal=journal)
        log_order_event("order_filled", symbol="BTCUSDT")
        assert journal.flush(5) and journal.state()["db_available"]
        assert receiver.requests == []

        postgres.stop("immediate")
        deadline = time.monotonic() + 10
        while not receiver.requests and time.monotonic() < deadline:
            log_order_event("order_filled", symbol="BTCUSDT")  # the loop keeps trading
            time.sleep(0.05)
        (fired,) = receiver.requests
        alert = fired["body"]["alert"]
        assert alert["rule"] == "journal_spilling" and alert["status"] == "firing"
        assert alert["severity"] == "error"
        assert "database unavailable" in alert["summary"]
        assert alert["details"]["db_available"] is False

        postgres.start()
        resolved = receiver.wait_for(2, timeout=15)
        assert [r["body"]["alert"]["status"] for r in resolved] == ["firing", "resolved"]
        assert journal.flush(10)
        rows = wait_until(lambda: len(alert_rows(db)) == 2 and alert_rows(db), timeout=10)
    finally:
        journal.stop()
        db.stop()
    # the firing row was written while the database was down: spilled, then replayed
    assert [(r["name"], r["alert_sent"], r["alert_method"]) for r in rows] == [
        ("alert_firing", True, "webhook"),
        ("alert_resolved", True, "webhook"),
    ]
