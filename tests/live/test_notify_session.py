"""Notifications from a real paper session on the test exchange (real ccxt over HTTP),
delivered by Apprise's json:// to a receiver on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from atb_testkit import FakeBinance
from live_helpers import QUICK, SMA, Advancer, Session, fake_args, fake_env

pytestmark = pytest.mark.e2e
pytest.importorskip("apprise")


class JsonReceiver:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.bodies.append(json.loads(body))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Drip:
    """Accepts, reads the request, then answers one byte every 4 s (issue 14's receiver)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                for byte in b"HTTP/1.1 200 OK\r\n" * 100:
                    if self.stop.wait(4.0):
                        return
                    conn.sendall(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def receiver() -> Iterator[JsonReceiver]:
    r = JsonReceiver()
    yield r
    r.close()


def test_paper_session_sends_exactly_one_notification_per_trade_event(
    session: Session, fake: FakeBinance, receiver: JsonReceiver
) -> None:
    env = {"ALERT_APPRISE_URLS": f"json://127.0.0.1:{receiver.port}/hook/tok3nSECRET"}
    with Advancer(fake):
        proc = session.run("mode=paper", *SMA, *QUICK, *fake_args(fake),
                           "live.max_iterations=60", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    opened = session.events("open_position")
    closed = session.events("close_position")
    assert len(opened) >= 2 and len(closed) >= 1, "the session must trade"
    titles = [b["title"] for b in receiver.bodies]
    assert len([t for t in titles if t.startswith("🟢 Opened long BTCUSDT")]) == len(opened)
    assert len([t for t in titles if " Closed long BTCUSDT: " in t]) == len(closed)
    assert len([t for t in titles if t.startswith("▶️ Session started (paper)")]) == 1
    assert len([t for t in titles if t.startswith("⏹ Session finished")]) == 1
    # Each close carries its PnL as the session recorded it.
    pnls = sorted(f"{json.loads(d)['pnl']:+,.2f}" for _, _, d in closed)
    sent = sorted(t.split(": ")[1].split(" ")[0] for t in titles if " Closed long " in t)
    assert sent == pnls
    # The URL's secret path is in no log line.
    assert "tok3nSECRET" not in proc.stdout + proc.stderr


def test_a_live_rejection_storm_is_rate_limited(
    session: Session, fake: FakeBinance, receiver: JsonReceiver
) -> None:
    """Every order the exchange gets is rejected: many order_rejected events, 2 messages
    and one saying how many more were held back."""
    fake.faults.reject_orders(times=10_000)
    env = {**fake_env(fake), "ALERT_APPRISE_URLS": f"json://127.0.0.1:{receiver.port}/hook"}
    with Advancer(fake):
        proc = session.run("mode=live", "live.i_understand_the_risks=true", *SMA, *QUICK,
                           *fake_args(fake), "live.max_iterations=240",
                           "notify.routes.order_rejected.rate_limit=2", env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rejected = len(session.events("order_rejected"))
    assert rejected >= 5, "the storm must be a storm"
    titles = [b["title"] for b in receiver.bodies]
    assert len([t for t in titles if t.startswith("⚠️ Order rejected BTCUSDT")]) == 2
    held = [b["title"] for b in receiver.bodies if "held back" in b["title"]]
    assert held == [f"⏸ {rejected - 2} more order rejected notifications held back"]


def test_a_dripping_channel_does_not_slow_the_session_or_its_stop(
    session: Session, fake: FakeBinance
) -> None:
    """Issue 14: a webhook answering 1 byte every 4 s; every notification and alert goes
    to it, and the session still runs at its pace and stops within its budget."""
    drip = Drip()
    try:
        with Advancer(fake):
            t0 = time.monotonic()
            proc = session.run(
                "mode=paper", *SMA, *QUICK, *fake_args(fake), "live.max_iterations=60",
                "alerts.channels.1.timeout=2", "alerts.stop_timeout=3",
                env={"ALERT_WEBHOOK_URL": f"http://127.0.0.1:{drip.port}/hook"},
            )  # fmt: skip
            elapsed = time.monotonic() - t0
    finally:
        drip.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    ((iterations,),) = session.query(
        "select json_extract(metrics, '$.iterations') from runs where mode='paper'"
    )
    assert iterations == 60
    # 60 iterations at 0.05 s, start-up and a 3 s alert budget: far from the minutes a
    # per-read timeout would take (each of the webhook's deliveries would drip forever).
    assert elapsed < 45, elapsed
