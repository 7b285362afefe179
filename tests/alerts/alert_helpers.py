"""Helpers for the alert tests: a real HTTP receiver on 127.0.0.1, a fake journal, entries."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from atb.alerts.router import AlertRouter


class Receiver:
    """Records every request. `mode`: ok | slow (sleeps `delay`) | 500 | 400 | down."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.mode = "ok"
        self.delay = 1.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                mode = receiver.mode
                with receiver._lock:
                    receiver.requests.append({
                        "path": self.path,
                        "headers": dict(self.headers),
                        "body": json.loads(body or b"null"),
                        "mode": mode,
                        "at": time.monotonic(),
                    })  # fmt: skip
                if mode == "slow":
                    time.sleep(receiver.delay)
                status = {"500": 500, "400": 400}.get(mode, 200)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    self.wfile.write(b"ok" if status == 200 else b"nope")
                except OSError:  # the client gave up waiting (the slow mode's point)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str = "/hook/s3cr3t-token") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def alerts(self) -> list[dict[str, Any]]:
        """The `alert` objects of the requests answered 2xx (not the notifications)."""
        with self._lock:
            return [r["body"]["alert"] for r in self.requests
                    if r["mode"] in ("ok", "slow") and "alert" in (r["body"] or {})]  # fmt: skip

    def wait_for(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.01)
        with self._lock:
            return list(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_port_url() -> str:
    """A URL nothing listens on (the 'receiver down' case)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


class FakeJournal:
    """Captures `emit()` calls: the router's system_events rows, before any database."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def emit(self, event: dict[str, Any]) -> str:
        with self._lock:
            self.events.append(dict(event))
        return "id"

    def alerts(self, name: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if name is None or e["name"] == name]


def webhook(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "_target_": "atb.alerts.channels.WebhookChannel",
        "url": url,
        "timeout": 0.5,
        "retries": 2,
        "backoff": 0.02,
        "breaker_threshold": 2,
        "breaker_cooldown": 30,
        **extra,
    }


def count_rule(**extra: Any) -> dict[str, Any]:
    return {
        "_target_": "atb.alerts.rules.EventCountRule",
        "name": "repeated_order_rejections",
        "events": ["order_rejected"],
        "group_by": ["symbol"],
        "threshold": 3,
        "window": 0.5,
        "severity": "critical",
        "dedup_window": 5,
        "renotify_interval": None,
        "clear_after": 0,
        **extra,
    }


def wait_until(predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    return predicate()


MakeRouter = Callable[..., AlertRouter]


class DripServer:
    """A receiver that answers one byte every `interval` seconds, forever (issue 14).

    Every read returns within any sane per-read timeout, so only a total deadline ends
    a request to it.
    """

    def __init__(self, interval: float = 4.0) -> None:
        self.interval = interval
        self.connections = 0
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def url(self, path: str = "/hook/drip-s3cr3t") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        with conn:
            conn.settimeout(0.5)
            with contextlib.suppress(OSError):
                conn.recv(65536)
            for byte in answer * 1000:
                if self._stop.wait(self.interval):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        self._thread.join(1)


class SmtpReceiver:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that keeps every message."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.messages: list[Any] = []
        receiver = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                import email
                from email import policy

                msg = email.message_from_bytes(envelope.content, policy=policy.default)
                receiver.messages.append(msg)
                return "250 OK"

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def url(self) -> str:
        return (f"mailto://127.0.0.1:{self.port}?from=atb@example.com&to=ops@example.com"
                "&mode=insecure")  # fmt: skip

    def close(self) -> None:
        self.controller.stop()


class TelegramReceiver:
    """Speaks enough of the Telegram Bot API (sendMessage) for Apprise's tgram:// plugin."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                receiver.requests.append({"path": self.path, "body": body})
                result = {"message_id": len(receiver.requests), "chat": {"id": 1}}
                reply = json.dumps({"ok": True, "result": result}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()  # fmt: skip

    @property
    def api_base(self) -> str:
        """What Apprise's Telegram plugin prefixes the bot token with."""
        return f"http://127.0.0.1:{self.port}/bot"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
