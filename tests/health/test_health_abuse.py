"""Abusive clients against the real health server: a connection cap answered with a fast
503, idle and header (slowloris) timeouts, 431 for oversized heads instead of a reset."""

from __future__ import annotations

import socket
import time

import pytest
from health_helpers import make_config, request, running

from atb.health.server import HealthServer

# Each test starts a process of its own (the health server, a session or the CLI): e2e.
pytestmark = pytest.mark.e2e

ONLY_CONFIG = [{"_target_": "atb.health.checks.ConfigCheck"}]


def _connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (ConnectionResetError, TimeoutError):
        chunks.append(b"<reset>")
    return b"".join(chunks)


def _wait_open(server: HealthServer, n: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while server.stats()["open_connections"] != n:
        assert time.monotonic() < deadline, server.stats()
        time.sleep(0.02)


def test_connection_cap_refuses_fast_and_keeps_serving() -> None:
    with running(make_config(checks=ONLY_CONFIG, max_connections=20)) as server:
        assert server.port is not None
        idle = [_connect(server.port) for _ in range(20)]
        try:
            _wait_open(server, 20)
            extra = []
            for _ in range(50):  # a flood beyond the cap: each one answered and closed
                sock = _connect(server.port)
                t0 = time.perf_counter()
                answer = _read_all(sock)
                extra.append(time.perf_counter() - t0)
                sock.close()
                assert answer.startswith(b"HTTP/1.1 503"), answer[:80]
                assert b"Retry-After: 1" in answer
            assert max(extra) < 1.0
            assert server.stats()["open_connections"] == 20  # fds stay bounded
            assert server.stats()["refused_connections"] == 50
        finally:
            for sock in idle[:5]:
                sock.close()
        _wait_open(server, 15)
        assert request(server, "/health").status in (200, 503)  # served again, not refused
        for sock in idle[5:]:
            sock.close()


def test_idle_keep_alive_connection_is_closed() -> None:
    with running(make_config(checks=ONLY_CONFIG, idle_timeout=0.5)) as server:
        assert server.port is not None
        idle = _connect(server.port)
        t0 = time.monotonic()
        assert _read_all(idle) in (b"", b"<reset>")
        assert time.monotonic() - t0 < 3.0
        idle.close()


def test_slowloris_head_is_closed_after_the_header_timeout() -> None:
    # idle_timeout is long: only the header timeout can end this connection.
    config = make_config(checks=ONLY_CONFIG, idle_timeout=60, header_timeout=0.6)
    with running(config) as server:
        assert server.port is not None
        slow = _connect(server.port)
        slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
        t0 = time.monotonic()
        closed = False
        while time.monotonic() - t0 < 5:
            try:
                slow.sendall(b"X")  # one byte at a time, forever
                closed = slow.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
            except BlockingIOError:
                pass
            except OSError:
                closed = True
            if closed:
                break
            time.sleep(0.1)
        assert closed and time.monotonic() - t0 < 3.0, "slowloris connection kept open"
        assert server.stats()["header_timeouts"] == 1
        slow.close()
        assert request(server, "/health").status in (200, 503)


def test_oversized_request_head_gets_431_not_a_reset() -> None:
    with running(make_config(checks=ONLY_CONFIG, max_header_bytes=8192)) as server:
        assert server.port is not None
        huge = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Junk: " + b"a" * 100_000 + b"\r\n\r\n"
        with _connect(server.port) as sock:
            sock.sendall(huge)
            answer = _read_all(sock)
        assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large"), answer[:80]
        assert server.stats()["oversized_headers"] == 1
        assert request(server, "/health").status in (200, 503)
