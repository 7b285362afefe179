"""Connection handling of the health server under abusive clients.

- `max_connections`: beyond it a new connection gets an immediate `503` (with
  `Retry-After`) and is closed: file descriptors stay bounded however many clients
  connect, and the ones already connected are served as before.
- `header_timeout`: a connection that has sent part of a request head but not all of it
  within this many seconds (slowloris) is closed. Idle keep-alive connections (nothing
  sent) are closed after `idle_timeout` by tornado itself.
- A request head over `max_header_bytes` gets `431 Request Header Fields Too Large`
  instead of a bare reset: tornado closes such a stream on its own; the answer is written
  just before, and the rest of the oversized head is read and discarded for a moment so
  the client sees the answer rather than a TCP reset.

The GIL cost of serving (~0.8 ms of tornado's Python per request) is paid by the health
server process, not the trading loop (atb/health/server.py; `nox -s bench -- -k
health_load` measures the loop with and without 200 keep-alive clients).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from typing import Any

import tornado.httpserver
import tornado.iostream

_HEADER_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: 45\r\n\r\n"
    b'{"error": "request header fields too large"}\n'
)
_BUSY_503 = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
    b"Retry-After: 1\r\nConnection: close\r\nContent-Length: 39\r\n\r\n"
    b'{"error": "too many open connections"}\n'
)
_DRAIN_SECONDS = 1.0
_DRAIN_BYTES = 1 << 20


class LimitedHTTPServer(tornado.httpserver.HTTPServer):
    """tornado's HTTPServer with a connection cap, a header timeout and a 431 answer."""

    def initialize(
        self,
        *args: Any,
        max_connections: int = 256,
        header_timeout: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().initialize(*args, **kwargs)
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self.refused = 0
        self.header_timeouts = 0
        self.oversized = 0
        self._partial_since: dict[int, float] = {}
        self._sweeper: asyncio.Task[None] | None = None

    def handle_stream(self, stream: tornado.iostream.IOStream, address: tuple[Any, ...]) -> None:
        if len(self._connections) >= self.max_connections:
            self.refused += 1
            sock = stream.socket
            with contextlib.suppress(OSError):
                sock.send(_BUSY_503)
            stream.close()
            return
        original_close = stream.close

        def close(exc_info: Any = False) -> None:
            if isinstance(exc_info, tornado.iostream.UnsatisfiableReadError):
                self.oversized += 1
                _answer_and_drain(stream, _HEADER_431)
            original_close(exc_info=exc_info)

        stream.close = close  # type: ignore[method-assign]
        super().handle_stream(stream, address)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def _sweep(self) -> None:
        """Close connections stuck in the middle of a request head (slowloris)."""
        period = max(0.05, min(1.0, self.header_timeout / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            alive: dict[int, float] = {}
            for conn in list(self._connections):
                stream = getattr(conn, "stream", None)
                if stream is None or stream.closed():
                    continue
                # Bytes received but not yet consumed by a complete request head.
                if getattr(stream, "_read_buffer_size", 0) <= 0:
                    continue
                key = id(conn)
                since = self._partial_since.get(key, now)
                alive[key] = since
                if now - since > self.header_timeout:
                    self.header_timeouts += 1
                    stream.close()
            self._partial_since = alive

    def stats(self) -> dict[str, int]:
        return {
            "open_connections": len(self._connections),
            "max_connections": self.max_connections,
            "refused_connections": self.refused,
            "header_timeouts": self.header_timeouts,
            "oversized_headers": self.oversized,
        }

    async def close_all_connections(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        await super().close_all_connections()


def _answer_and_drain(stream: tornado.iostream.IOStream, answer: bytes) -> None:
    """Write `answer`, then read and discard what the client is still sending for a
    moment before closing: closing with unread input makes the kernel send a reset, and
    the client would lose the answer."""
    sock = stream.socket
    if sock is None:
        return
    try:
        sock.send(answer)
        dup = sock.dup()
    except OSError:
        return
    with contextlib.suppress(OSError):
        dup.shutdown(socket.SHUT_WR)
    dup.setblocking(False)
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + _DRAIN_SECONDS
    drained = [0]

    def drain() -> None:
        try:
            while True:
                chunk = dup.recv(65536)
                if not chunk:
                    break
                drained[0] += len(chunk)
                if drained[0] > _DRAIN_BYTES:
                    break
        except BlockingIOError:
            if time.monotonic() < deadline:
                return  # more may come; the reader callback fires again
        except OSError:
            pass
        loop.remove_reader(dup.fileno())
        dup.close()

    loop.add_reader(dup.fileno(), drain)
    loop.call_later(_DRAIN_SECONDS, _close_quietly, loop, dup)


def _close_quietly(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    if sock.fileno() < 0:
        return
    with contextlib.suppress(Exception):
        loop.remove_reader(sock.fileno())
    sock.close()
