"""A dead notification channel costs the trading loop nothing: trade events emitted with the
notifier delivering to a receiver that drips one byte every 4 s vs to a healthy receiver
on 127.0.0.1, same process, same run (baseline: the healthy receiver).

Every event is a trade notification (rate limit off, so all of them go to the channel's
queue). Run with `nox -s bench` or `python tests/benchmarks/bench_notify.py`.
"""

from __future__ import annotations

import gc
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

N_EVENTS = 20_000
ROUNDS = 3


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client cut off at stop() is expected here


def _drip_server(stop: threading.Event) -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    sock.settimeout(0.1)

    def drip(conn: socket.socket) -> None:
        with conn:
            try:
                conn.recv(65536)
                while not stop.wait(4.0):
                    conn.sendall(b"H")
            except OSError:
                return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            threading.Thread(target=drip, args=(conn,), daemon=True).start()
        sock.close()

    threading.Thread(target=accept, daemon=True).start()
    return int(sock.getsockname()[1])


def _emit_rate(url: str) -> float:
    from atb.alerts.config import AlertsConfig
    from atb.alerts.router import AlertRouter
    from atb.logging.events import log_engine_event
    from atb.notify.config import NotifyConfig
    from atb.notify.node import Notifier
    from atb.runtime.context import RunContext

    ctx = RunContext(mode="paper", symbol="BTCUSDT", strategy="sma_crossover")
    router = AlertRouter(AlertsConfig.model_validate({
        "_target_": "atb.alerts.router.AlertRouter", "stop_timeout": 1, "rules": [],
        "channels": [{"_target_": "atb.alerts.channels.WebhookChannel", "url": url,
                      "timeout": 5, "retries": 0}],
    }), ctx)  # fmt: skip
    route = {"events": ["close_position"], "rate_limit": 0}
    notifier = Notifier(NotifyConfig.model_validate({
        "_target_": "atb.notify.node.Notifier", "routes": {"trade_closed": route},
        "daily_summary": {"enabled": False},
    }), ctx, alerts=router)  # fmt: skip
    router.start()
    notifier.start()
    try:
        gc.collect()
        t0 = time.perf_counter()
        for i in range(N_EVENTS):
            log_engine_event("close_position", position_no=i, side="long", qty=0.01,
                             exit_price=43_000.5, pnl=1.5, exit_reason="signal")  # fmt: skip
        elapsed = time.perf_counter() - t0
    finally:
        notifier.stop()
        router.stop()
    return N_EVENTS / elapsed


def run() -> dict[str, float]:
    from atb.logging.setup import configure_logging

    configure_logging({"level": "WARNING", "background": True})
    server = _Server(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    stop = threading.Event()
    drip_port = _drip_server(stop)
    healthy, dead = [], []
    try:
        for _ in range(ROUNDS):
            healthy.append(_emit_rate(f"http://127.0.0.1:{server.server_address[1]}/hook"))
            dead.append(_emit_rate(f"http://127.0.0.1:{drip_port}/hook"))
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
    result = {
        "healthy_events_per_s": max(healthy),
        "dead_events_per_s": max(dead),
        "ratio": max(dead) / max(healthy),
    }
    print(
        f"\nnotify: {N_EVENTS} trade events, best of {ROUNDS}\n"
        f"healthy receiver (baseline): {result['healthy_events_per_s']:,.0f} events/s\n"
        f"dripping receiver          : {result['dead_events_per_s']:,.0f} events/s\n"
        f"ratio                      : {result['ratio']:.2f}x (required >= 0.8)",
        file=sys.stderr,
    )
    return result


def test_dead_channel_does_not_slow_the_loop() -> None:
    assert run()["ratio"] >= 0.8


if __name__ == "__main__":
    run()
