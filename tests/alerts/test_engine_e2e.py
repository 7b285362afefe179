"""Real sessions (`python -m atb mode=paper|live`) against FakeBinance, alerts to a receiver.

The engine's own events drive the rules: the test exchange rejects every order (live) and
freezes its candles (paper); the alert router in the subprocess posts to the receiver in
this process.
"""

from __future__ import annotations

import importlib.util
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from alert_helpers import Receiver

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        importlib.util.find_spec("atb.engine.live") is None, reason="no paper/live engine yet"
    ),
]

HOUR = 3_600_000
T0 = 1_704_067_200_000
FAST, SLOW = 3, 8
QUICK = [
    "strategy=sma_crossover", f"strategy.fast={FAST}", f"strategy.slow={SLOW}",
    "health=off", "live.check_interval=0.05", "live.cooldown=0.02", "live.stale_after=1e12",
    "exchange.retry.initial=0.02", "exchange.retry.max=0.2", "exchange.timeout=2",
    "alerts.tick=0.05",
    # The loop beats every 0.05 s here; a slow first order must not read as a stall.
    "alerts.rules.4.silence=30",
]  # fmt: skip


def zigzag(n: int = 400, leg: int = 12) -> list[Any]:
    from atb_testkit import Candle

    out, close = [], 30_000.0
    for i in range(n):
        drift = 0.004 if (i // leg) % 2 else -0.004
        open_, close = close, round(close * math.exp(drift), 2)
        out.append(Candle(T0 + i * HOUR, open_, round(max(open_, close) * 1.001, 2),
                          round(min(open_, close) * 0.999, 2), close, 100.0))  # fmt: skip
    return out


class Advancer:
    """Reveal one more candle after each klines request (poll i sees bar i)."""

    def __init__(self, fake: Any) -> None:
        self.fake, self._seen = fake, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            n = len(self.fake.requests_to("/api/v3/klines"))
            if n > self._seen:
                self._seen = n
                self.fake.advance(1)

    def __enter__(self) -> Advancer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def start_session(tmp: Path, fake: Any, receiver: Receiver, *args: str) -> subprocess.Popen[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("BINANCE_", "PORT", "HEALTH_CHECK_PORT", "ATB_DB", "ALERT_"))
    }
    env.update(
        {
            "ATB_OUTPUT_DIR": str(tmp / "outputs"),
            "BINANCE_API_KEY": fake.api_key,
            "BINANCE_API_SECRET": fake.api_secret,
            "ALERT_WEBHOOK_URL": receiver.url(),
        }
    )
    cmd = [sys.executable, "-m", "atb", *QUICK, *args, f"exchange.base_url={fake.url}",
           f"db.url=sqlite:///{tmp / 'atb.db'}"]  # fmt: skip
    return subprocess.Popen(cmd, cwd=tmp, env=env, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip


def finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    return out + err


def alert_rows(tmp: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(tmp / "atb.db") as conn:
        return conn.execute(
            "select name, alert_sent, alert_method, json_extract(details, '$.alert.rule') "
            "from system_events where event_type = 'ALERT' order by timestamp"
        ).fetchall()


def wait_for_alert(receiver: Receiver, proc: subprocess.Popen[str], rule: str, status: str,
                   timeout: float = 30) -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(a["rule"] == rule and a["status"] == status for a in receiver.alerts):
            return
        time.sleep(0.02)
    proc.kill()
    _out, err = proc.communicate()
    raise AssertionError(f"no {rule} {status} alert: {receiver.alerts}\n{err[-3000:]}")


def test_live_session_rejections_and_frozen_candles_alert_and_resolve(
    tmp_path: Path, receiver: Receiver
) -> None:
    """One session (the process start is most of the cost): both rules, end to end."""
    from atb_testkit import FakeBinance

    with FakeBinance(candles=zigzag(), warmup=SLOW + 30,
                     balances={"USDT": 10_000.0, "BTC": 0.0}) as fake:  # fmt: skip
        fake.faults.reject_orders(times=None)  # every order: insufficient balance (-2010)
        with Advancer(fake):
            proc = start_session(
                tmp_path, fake, receiver, "mode=live", "live.i_understand_the_risks=true",
                "live.max_iterations=2000", "live.stale_polls=3",
                "alerts.rules.0.threshold=2", "alerts.rules.0.window=600",
            )  # fmt: skip
            wait_for_alert(receiver, proc, "repeated_order_rejections", "firing")
            fake.faults.freeze_candles()  # the feed goes quiet: stale_data after 3 polls
            wait_for_alert(receiver, proc, "stale_data", "firing")
            fake.faults.unfreeze_candles()  # fresh candles again: data_recovered
            wait_for_alert(receiver, proc, "stale_data", "resolved")
            proc.send_signal(signal.SIGTERM)  # the operator stops the run
            output = finish(proc)

    rejected = [a for a in receiver.alerts if a["rule"] == "repeated_order_rejections"]
    assert len(rejected) == 1, receiver.alerts  # one firing inside the dedup window
    alert = rejected[0]
    assert alert["status"] == "firing" and alert["mode"] == "live"
    assert alert["symbol"] == "BTCUSDT" and alert["strategy"] == "sma_crossover"
    assert "insufficient balance" in alert["summary"].lower()
    stale = [a for a in receiver.alerts if a["rule"] == "stale_data"]
    assert [a["status"] for a in stale] == ["firing", "resolved"], receiver.alerts
    assert stale[0]["severity"] == "warning"
    assert fake.api_secret not in str(receiver.requests) and fake.api_secret not in output

    rows = alert_rows(tmp_path)
    rejections = [r[:3] for r in rows if r[3] == "repeated_order_rejections"]
    assert rejections[0] == ("alert_firing", 1, "webhook")
    assert all(r[1:] == (0, "suppressed") for r in rejections[1:])  # later ones: duplicates
    assert [r[:3] for r in rows if r[3] == "stale_data"] == [
        ("alert_firing", 1, "webhook"), ("alert_resolved", 1, "webhook")]  # fmt: skip
