"""One HTTP request bounded by a total deadline (connect + send + read), not per read.

A socket timeout bounds each read, so a receiver that drips one byte every few seconds
keeps a plain `urlopen(timeout=5)` alive forever. Here a watchdog timer shuts the socket
down when the deadline passes (or when `cancel()` is called at shutdown): whatever the
request was blocked on returns at once and the attempt fails with a clear reason.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit


class DeadlineExceeded(Exception):
    """The request did not complete within its total deadline (or was cancelled)."""


@dataclass
class Response:
    status: int
    reason: str
    body: bytes


class BoundedRequest:
    """`BoundedRequest(url, timeout).send(method, body, headers)`; `cancel()` from any thread."""

    def __init__(self, url: str, timeout: float, verify_tls: bool = True) -> None:
        self.url = url
        self.timeout = timeout
        self.verify_tls = verify_tls
        self._conn: http.client.HTTPConnection | None = None
        self._cut = threading.Event()
        self._lock = threading.Lock()

    def cancel(self) -> None:
        """Abort the request in flight (the watchdog, or stop() cutting it short)."""
        with self._lock:
            self._cut.set()
            sock = self._conn.sock if self._conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):  # already closed: nothing left to cut
                sock.shutdown(socket.SHUT_RDWR)

    def send(
        self, method: str, body: bytes, headers: dict[str, str], max_body: int = 4096
    ) -> Response:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        conn: http.client.HTTPConnection
        if parts.scheme == "https":
            context = ssl.create_default_context()
            if not self.verify_tls:
                context = ssl._create_unverified_context()
            conn = http.client.HTTPSConnection(host, parts.port, timeout=self.timeout,
                                               context=context)  # fmt: skip
        else:
            conn = http.client.HTTPConnection(host, parts.port, timeout=self.timeout)
        with self._lock:
            if self._cut.is_set():
                raise DeadlineExceeded("cancelled")
            self._conn = conn
        started = time.monotonic()
        watchdog = threading.Timer(self.timeout, self.cancel)
        watchdog.daemon = True
        watchdog.start()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read(max_body)
            return Response(int(resp.status), str(resp.reason), data)
        except (OSError, http.client.HTTPException) as exc:
            if self._cut.is_set():
                elapsed = time.monotonic() - started
                raise DeadlineExceeded(
                    f"timed out after {elapsed:.1f}s: no complete answer within the "
                    f"{self.timeout:g}s total deadline (connect + send + read)"
                ) from None
            raise exc
        finally:
            watchdog.cancel()
            with self._lock:
                self._conn = None
            conn.close()
