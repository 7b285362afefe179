"""`atb alerts test`: prove every channel works before going live."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alert_helpers import Receiver, closed_port_url

from atb.alerts.cli import command


@pytest.mark.e2e
def test_atb_alerts_test_delivers_through_every_channel_and_records_it(
    receiver: Receiver, tmp_path: Path
) -> None:
    db_file = tmp_path / "atb.db"
    env = {k: v for k, v in os.environ.items() if k != "ALERT_WEBHOOK_URL"}
    env["ATB_DB_URL"] = f"sqlite:///{db_file}"
    url = receiver.url("/services/T0/B0/s3cr3tTOKEN")
    done = subprocess.run(
        [sys.executable, "-m", "atb.cli", "alerts", "test", "--webhook-url", url],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert "✅ log" in done.stdout
    assert f"✅ webhook (http://127.0.0.1:{receiver.port}/…)" in done.stdout
    assert "recorded in system_events" in done.stdout
    assert "s3cr3tTOKEN" not in out  # the URL's token is never printed
    (request,) = receiver.requests
    assert request["path"] == "/services/T0/B0/s3cr3tTOKEN"
    body = request["body"]
    assert "TEST" in body["text"] and body["alert"]["status"] == "test"
    with sqlite3.connect(db_file) as conn:
        rows = conn.execute(
            "SELECT event_type, name, alert_sent, alert_method FROM system_events"
        ).fetchall()
    assert rows == [("TEST", "alert_test", 1, "webhook")]


def test_a_dead_receiver_fails_the_test(capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
    url = closed_port_url()
    code = command(
        "alerts",
        [
            "test",
            "--no-record",
            "--webhook-url",
            url,
            "alerts.channels.1.retries=1",
            "alerts.channels.1.backoff=0",
        ],
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "❌ webhook" in out and "failed after 2 attempts" in out and "refused" in out


def test_no_external_channel_fails_loudly(capsys: Any, monkeypatch: Any) -> None:
    monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
    code = command("alerts", ["test", "--no-record"])
    out = capsys.readouterr().out
    assert code == 1
    assert "⚪ webhook: not configured" in out
    assert "no external alert channel is configured" in out


def test_config_errors_exit_2(capsys: Any) -> None:
    code = command("alerts", ["test", "--no-record", "alerts.rules.0.threshold=0"])
    assert code == 2
    assert "alerts.rules.0.threshold" in capsys.readouterr().err


def test_rules_say_when_the_mode_is_why_alerts_are_inactive(capsys: Any) -> None:
    assert command("alerts", ["rules"]) == 0  # the default run is a backtest
    assert capsys.readouterr().out.startswith("alerts: inactive in backtest mode;")
    assert command("alerts", ["rules", "mode=paper"]) == 0
    assert capsys.readouterr().out.startswith("alerts: enabled;")
    assert command("alerts", ["rules", "mode=paper", "alerts=off"]) == 0
    assert capsys.readouterr().out.startswith("alerts: disabled (alerts=off);")


def test_rules_lists_what_is_configured(capsys: Any) -> None:
    assert command("alerts", ["rules"]) == 0
    out = capsys.readouterr().out
    assert "repeated_order_rejections [critical] EventCountRule" in out
    assert "loop_stalled [critical] HeartbeatSilenceRule" in out
    assert "webhook WebhookChannel" in out
