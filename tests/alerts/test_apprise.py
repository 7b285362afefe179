"""The Apprise channel against real receivers on 127.0.0.1: JSON, SMTP and Telegram's API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alert_helpers import (
    MakeRouter,
    Receiver,
    SmtpReceiver,
    TelegramReceiver,
    closed_port_url,
    count_rule,
    wait_until,
)

from atb.alerts.apprise_channel import AppriseChannelConfig, url_secrets
from atb.alerts.delivery import ChannelWorker
from atb.alerts.model import Notification
from atb.alerts.router import build_channels
from atb.logging.events import log_order_event
from atb.logging.redaction import get_redactor
from atb.runtime.context import RunContext

pytest.importorskip("apprise")

BOT_TOKEN = "123456789:AAbbCCddEEffGGhhIIjj"


def apprise_entry(*urls: str, **extra: Any) -> dict[str, Any]:
    return {
        "_target_": "atb.alerts.apprise_channel.AppriseChannel",
        "urls": list(urls),
        "timeout": 3,
        "retries": 0,
        **extra,
    }


def channels_for(*urls: str, **extra: Any) -> list[Any]:
    config = AppriseChannelConfig.model_validate(apprise_entry(*urls, **extra))
    return build_channels([config], RunContext(mode="paper", symbol="BTCUSDT", strategy="sma"))


def sample_note() -> Notification:
    return Notification(
        rule="repeated_order_rejections",
        severity="critical",
        status="firing",
        summary="3 orders rejected for BTCUSDT within 300s (last: insufficient balance)",
        details={"check": "the account balance"},
        symbol="BTCUSDT",
        mode="paper",
        strategy="sma",
        run_id="0123456789abcdef",
    )


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    server = SmtpReceiver()
    yield server
    server.close()


@pytest.fixture
def telegram(monkeypatch: pytest.MonkeyPatch) -> Iterator[TelegramReceiver]:
    """Apprise's Telegram plugin pointed at a Bot-API-compatible receiver on 127.0.0.1.

    The plugin takes its API base from the class attribute `notify_url`; pointing it at
    the local receiver is the only change: the plugin code that runs is the real one.
    """
    from apprise.plugins.telegram import NotifyTelegram

    server = TelegramReceiver()
    monkeypatch.setattr(NotifyTelegram, "notify_url", server.api_base)
    yield server
    server.close()


def test_json_url_gets_title_and_markdown_body_through_the_router(
    make_router: MakeRouter, receiver: Receiver
) -> None:
    url = f"json://127.0.0.1:{receiver.port}/hook/t0kenSECRETpath"
    router = make_router([count_rule(threshold=1, check="the account balance")],
                         [apprise_entry(url)])  # fmt: skip
    log_order_event("order_rejected", level="WARNING", symbol="BTCUSDT", reason="min notional")
    (request,) = receiver.wait_for(1)
    body = request["body"]
    assert request["path"] == "/hook/t0kenSECRETpath"
    assert body["title"].startswith("🚨 [CRITICAL] repeated_order_rejections FIRING")
    assert "min notional" in body["message"]
    assert "*Symbol:* BTCUSDT" in body["message"] and "*Strategy:* ml_basic" in body["message"]
    assert "*What to check:* the account balance" in body["message"]
    assert body["type"] == "failure"  # critical → Apprise's failure type (red on most services)
    state = wait_until(lambda: router.state()["channels"]["apprise.json"]["sent"] == 1 and
                       router.state())  # fmt: skip
    channel = state["channels"]["apprise.json"]
    assert channel["state"] == "ok" and channel["target"] == f"json://127.0.0.1:{receiver.port}/…"
    assert "t0kenSECRETpath" not in json.dumps(state)


def test_mailto_delivers_a_mail_with_subject_and_body(smtp: SmtpReceiver) -> None:
    (channel,) = channels_for(smtp.url())
    assert channel.name == "apprise.mailto"
    result = ChannelWorker(channel).deliver(sample_note())
    assert result.ok, result.error
    (mail,) = wait_until(lambda: smtp.messages)
    assert mail["Subject"] == "🚨 [CRITICAL] repeated_order_rejections FIRING"
    assert mail["To"] == "ops@example.com" and mail["From"] == "atb@example.com"
    text = mail.get_body(("plain",)).get_content()
    assert "3 orders rejected for BTCUSDT within 300s" in text
    assert "What to check: the account balance" in text  # markdown rendered for mail
    html = mail.get_body(("html",)).get_content()
    assert "<strong>Symbol:</strong> BTCUSDT" in html or "Symbol:" in html


def test_tgram_url_talks_to_a_telegram_bot_api(telegram: TelegramReceiver) -> None:
    (channel,) = channels_for(f"tgram://{BOT_TOKEN}/987654321")
    result = ChannelWorker(channel).deliver(sample_note())
    assert result.ok, result.error
    (request,) = [r for r in telegram.requests if r["path"].endswith("/sendMessage")]
    assert request["path"] == f"/bot{BOT_TOKEN}/sendMessage"
    body = request["body"]
    assert str(body["chat_id"]) == "987654321"
    assert "repeated_order_rejections" in body["text"] and "insufficient balance" in body["text"]
    # The token is shown only in Apprise's privacy form, never whole.
    assert BOT_TOKEN not in json.dumps(channel.describe())


def test_each_url_is_its_own_channel_and_a_dead_one_holds_back_no_other(
    make_router: MakeRouter, receiver: Receiver
) -> None:
    dead = closed_port_url().replace("http://", "json://")
    good = f"json://127.0.0.1:{receiver.port}/hook"
    router = make_router([count_rule(threshold=1, dedup_window=0, window=60)],
                         [apprise_entry(dead, good, breaker_threshold=1)])  # fmt: skip
    for i in range(3):
        log_order_event("order_rejected", level="WARNING", symbol=f"S{i}", reason="x")

    def settled() -> Any:
        state = router.state()
        channels = state["channels"]
        done = channels["apprise.json.2"]["sent"] == 3 and channels["apprise.json.1"]["failed"] == 3
        return done and state

    state = wait_until(settled)
    assert len(receiver.requests) == 3
    channels = state["channels"]
    assert channels["apprise.json.2"]["sent"] == 3 and channels["apprise.json.2"]["state"] == "ok"
    assert channels["apprise.json.1"]["state"] == "down"
    assert "Connection error" in channels["apprise.json.1"]["last_error"]
    assert state["status"] == "degraded"


def test_url_secrets_are_registered_with_the_redactor() -> None:
    urls = [
        f"tgram://{BOT_TOKEN}/987654321",
        "discord://112233445566778899/WebhookTokenAbcDef123",
        "slack://TokenAAAA/TokenBBBBB/TokenCCCCCCCC/#alerts",
        "mailto://bot:SmtpPassw0rd@smtp.example.com?to=ops@example.com",
        "ntfy://ntfy.example.com/topic?token=tk_ntfyTOKEN",
    ]
    channels_for(*urls)
    text = " ".join(urls) + " " + BOT_TOKEN
    redacted = get_redactor().redact_text(text)
    for secret in (BOT_TOKEN, "WebhookTokenAbcDef123", "TokenCCCCCCCC", "SmtpPassw0rd",
                   "tk_ntfyTOKEN"):  # fmt: skip
        assert secret not in redacted, secret
    # Where a message goes stays readable: real host names and addresses are kept.
    assert "smtp.example.com" not in url_secrets(urls[3])
    assert "ops@example.com" not in url_secrets(urls[3])


def test_several_urls_from_one_string_commas_inside_a_url_stay() -> None:
    config = AppriseChannelConfig.model_validate(apprise_entry(
        "json://127.0.0.1:1/a, mailto://127.0.0.1:2?from=f@x.org&to=a@x.org,b@x.org\ntgram://1234:abcd/5"
    ))  # fmt: skip
    urls = [u.get_secret_value() for u in config.urls]
    assert urls == ["json://127.0.0.1:1/a", "mailto://127.0.0.1:2?from=f@x.org&to=a@x.org,b@x.org",
                    "tgram://1234:abcd/5"]  # fmt: skip


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path) -> Any:
    full = {k: v for k, v in os.environ.items()
            if k not in ("ALERT_WEBHOOK_URL", "ALERT_APPRISE_URLS")}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "atb.cli", "alerts", "test", "--no-record", *args],
        capture_output=True, text=True, timeout=90, env={**full, **(env or {})}, cwd=cwd,
    )  # fmt: skip


@pytest.mark.e2e
def test_atb_alerts_test_says_which_apprise_url_works_and_why_not(
    receiver: Receiver, tmp_path: Path
) -> None:
    good = f"json://127.0.0.1:{receiver.port}/hook/s3cr3tPATHtoken"
    dead = closed_port_url().replace("http://", "json://") + "/d3adTOKENpath"
    done = run_cli("alerts.channels.2.retries=0", env={"ALERT_APPRISE_URLS": f"{good} {dead}"},
                   cwd=tmp_path)  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 1, out  # one URL failed: the test fails
    assert f"✅ apprise.json.1 (json://127.0.0.1:{receiver.port}/…): delivered" in done.stdout
    dead_port = dead.split(":")[2].split("/")[0]
    assert (f"❌ apprise.json.2 (json://127.0.0.1:{dead_port}/…): failed after 1 attempt: "
            "A Connection error occurred") in done.stdout  # fmt: skip
    assert "s3cr3tPATHtoken" not in out and "d3adTOKENpath" not in out
    (request,) = receiver.requests
    assert "TEST" in request["body"]["title"]


@pytest.mark.e2e
def test_a_bad_apprise_url_is_one_config_line_that_does_not_echo_it(tmp_path: Path) -> None:
    done = run_cli("--apprise-url", "nosuchservice://s3cr3tVALUE@host", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "config error: alerts.channels.2.urls.0: Apprise cannot use this nosuchservice:// URL "
        "(unknown service or missing parts; see https://github.com/caronc/apprise/wiki)"
    ]
    assert "s3cr3tVALUE" not in done.stdout + done.stderr
