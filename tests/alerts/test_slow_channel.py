"""Issue 14, slow channels: a webhook that drips one byte at a time.

Every read returns well within the per-attempt timeout, so only a total deadline ends a
delivery; alerts must be on record when they fire, not when a receiver lets go, and
stop() must keep to its budget.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from alert_helpers import DripServer, FakeJournal, MakeRouter, count_rule, wait_until, webhook
from sqlalchemy import text
from test_db import start_journal

from atb.alerts.channels import WebhookChannel, WebhookChannelConfig
from atb.alerts.delivery import ChannelWorker
from atb.alerts.model import Notification
from atb.logging.events import log_order_event
from atb.runtime.context import RunContext


@pytest.fixture
def drip() -> Iterator[DripServer]:
    server = DripServer(interval=0.4)  # the 4 s, scaled down with the timeout
    yield server
    server.close()


def test_a_delivery_has_a_total_deadline_not_a_per_read_one(drip: DripServer) -> None:
    config = WebhookChannelConfig.model_validate(
        {"_target_": "atb.alerts.channels.WebhookChannel", "url": drip.url(), "timeout": 1.0,
         "retries": 0}
    )  # fmt: skip
    channel = WebhookChannel(config, RunContext(mode="paper"))
    note = Notification(rule="r", severity="error", status="firing", summary="s")
    t0 = time.monotonic()
    result = ChannelWorker(channel).deliver(note)
    elapsed = time.monotonic() - t0
    assert not result.ok
    assert result.error is not None and result.error.startswith("timed out after")
    assert "1s total deadline" in result.error
    assert elapsed < 2.5  # each byte came within 0.4 s: a per-read timeout never fires


@pytest.mark.slow  # a real receiver dripping a byte every 0.4 s, past the delivery deadline
def test_alert_rows_are_written_when_alerts_fire_and_the_outcome_follows(
    make_router: MakeRouter, drip: DripServer
) -> None:
    journal = FakeJournal()
    router = make_router(
        [count_rule(threshold=1, dedup_window=0, window=60)],
        [webhook(drip.url(), timeout=1.0, retries=1, backoff=0.05, breaker_threshold=100)],
        journal=journal,
        record_delay=0.3,
        stop_timeout=2,
    )
    for i in range(28):  # the 28 alerts
        log_order_event("order_rejected", level="WARNING", symbol=f"S{i}", reason="x")
    # All 28 are on record long before their deliveries (2 × 1 s each, one at a time) end.
    fired = wait_until(lambda: len(journal.alerts("alert_firing")) == 28, timeout=3)
    assert fired
    rows = journal.alerts("alert_firing")
    assert all(r["alert_sent"] is False for r in rows)
    assert {r["alert_method"] for r in rows} == {"pending:webhook"}
    # The first delivery ends (timed out twice): its outcome is an alert_delivery row.
    (outcome, *_) = wait_until(lambda: journal.alerts("alert_delivery"), timeout=5)
    assert outcome["alert_method"] == "failed:webhook" and outcome["alert_sent"] is False
    assert outcome["details"]["alert_id"] in {r["details"]["alert"]["id"] for r in rows}
    assert "timed out" in outcome["details"]["delivery"]["webhook"]["error"]
    # stop() keeps to its budget although a delivery is hanging and 26 are queued.
    t0 = time.monotonic()
    router.stop()
    assert time.monotonic() - t0 < 2.6
    deliveries = journal.alerts("alert_delivery")
    assert len(deliveries) == 28  # the queued ones: "not delivered before shutdown"
    assert sum("shutdown" in json.dumps(d["details"]) for d in deliveries) >= 20


def test_with_a_real_database_every_alert_row_is_written(
    make_router: MakeRouter, drip: DripServer, tmp_path: Path
) -> None:
    db, journal = start_journal(f"sqlite:///{tmp_path / 'atb.db'}", tmp_path)
    try:
        router = make_router(
            [count_rule(threshold=1, dedup_window=0, window=60)],
            [webhook(drip.url(), timeout=1.0, retries=3, backoff=0.05)],
            journal=journal,
            stop_timeout=1,
        )
        for i in range(28):
            log_order_event("order_rejected", level="WARNING", symbol=f"S{i}", reason="x")
        wait_until(lambda: router.state()["counts"]["notified"] == 28)
        router.stop()  # straight away: nothing was delivered yet
        assert journal.flush(5)
        with db.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT name, alert_method FROM system_events WHERE event_type = 'ALERT'"
            )).all()  # fmt: skip
    finally:
        journal.stop()
        db.stop()
    firing = [m for n, m in rows if n == "alert_firing"]
    assert len(firing) == 28  # before: 0 of 28
    assert len([m for n, m in rows if n == "alert_delivery"]) == 28


def test_an_apprise_delivery_has_the_same_total_deadline(drip: DripServer) -> None:
    pytest.importorskip("apprise")
    from atb.alerts.apprise_channel import AppriseChannelConfig
    from atb.alerts.router import build_channels

    config = AppriseChannelConfig.model_validate(
        {"_target_": "atb.alerts.apprise_channel.AppriseChannel",
         "urls": [f"json://127.0.0.1:{drip.port}/hook"], "timeout": 1.0, "retries": 0}
    )  # fmt: skip
    (channel,) = build_channels([config], RunContext(mode="paper"))
    note = Notification(rule="r", severity="error", status="firing", summary="s")
    t0 = time.monotonic()
    result = ChannelWorker(channel).deliver(note)
    assert not result.ok and result.error is not None
    assert result.error.startswith("timed out") and "1s total deadline" in result.error
    assert time.monotonic() - t0 < 2.5
