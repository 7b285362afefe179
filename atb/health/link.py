"""The private channel between the trading process and its health-server process.

One `socket.socketpair()` end on each side, carrying length-prefixed JSON frames
(4-byte big-endian length, then UTF-8 JSON). Three kinds of frame:

- `{"k": "ev", ...}`: a one-way event (the trading process's state, a log line);
- `{"k": "rq", "id": n, "op": name, "a": {...}}`: a request, answered by the peer's
  handler for `op` on a worker thread, so a slow handler never stops the reader;
- `{"k": "rs", "id": n, "ok": bool, "v": value | "e": message}`: its answer.

Both sides use this class on plain threads: the trading process because its publisher
must not depend on an event loop, the server process because its checks already run on
worker threads. End of file on the socket means the peer is gone (killed, crashed or
stopped): `on_close` runs once, pending requests fail with `LinkClosed`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

Handler = Callable[[dict[str, Any]], Any]
_HEADER = struct.Struct(">I")
MAX_FRAME = 64 << 20  # a metrics page of a very busy run is well below this


class LinkClosed(ConnectionError):
    """The peer process closed the channel (it exited or was killed)."""


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=str, separators=(",", ":")).encode()


class Link:
    def __init__(
        self,
        sock: socket.socket,
        *,
        handlers: dict[str, Handler] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        on_close: Callable[[], None] | None = None,
        name: str = "atb-health-link",
    ) -> None:
        self.sock = sock
        self.handlers = dict(handlers or {})
        self.on_event = on_event
        self.on_close = on_close
        self.name = name
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future[Any]] = {}
        self._pending_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._closed = threading.Event()
        self._workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix=f"{name}-handler")
        self._reader = threading.Thread(target=self._read_forever, name=name, daemon=True)

    def start(self) -> Link:
        self._reader.start()
        return self

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- sending ------------------------------------------------------------------------------

    def _send(self, frame: dict[str, Any]) -> None:
        data = _dumps(frame)
        with self._send_lock:
            if self._closed.is_set():
                raise LinkClosed(f"{self.name}: channel closed")
            try:
                self.sock.sendall(_HEADER.pack(len(data)) + data)
            except OSError as exc:
                raise LinkClosed(f"{self.name}: {exc}") from None

    def event(self, **payload: Any) -> None:
        self._send({"k": "ev", **payload})

    def request_future(self, op: str, **args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        rid = next(self._ids)
        with self._pending_lock:
            self._pending[rid] = future
        try:
            self._send({"k": "rq", "id": rid, "op": op, "a": args})
        except LinkClosed as exc:
            with self._pending_lock:
                self._pending.pop(rid, None)
            future.set_exception(exc)
        return future

    def request(self, op: str, timeout: float, **args: Any) -> Any:
        """The peer's answer to `op`; raises its error, `LinkClosed`, or `TimeoutError`."""
        return self.request_future(op, **args).result(timeout)

    # -- receiving ----------------------------------------------------------------------------

    def _recv_exact(self, n: int) -> bytes:
        chunks: list[bytes] = []
        while n:
            chunk = self.sock.recv(min(n, 1 << 20))
            if not chunk:
                raise LinkClosed(f"{self.name}: peer closed the channel")
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _read_forever(self) -> None:
        try:
            while True:
                (size,) = _HEADER.unpack(self._recv_exact(_HEADER.size))
                if size > MAX_FRAME:
                    raise LinkClosed(f"{self.name}: frame of {size} bytes refused")
                self._dispatch(json.loads(self._recv_exact(size)))
        except (LinkClosed, OSError, ValueError):
            pass
        finally:
            self._shut()

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("k")
        if kind == "ev":
            if self.on_event is not None:
                self.on_event(frame)
        elif kind == "rs":
            with self._pending_lock:
                future = self._pending.pop(int(frame["id"]), None)
            if future is not None and not future.done():
                if frame.get("ok"):
                    future.set_result(frame.get("v"))
                else:
                    future.set_exception(RuntimeError(str(frame.get("e"))))
        elif kind == "rq":
            self._workers.submit(self._answer, frame)

    def _answer(self, frame: dict[str, Any]) -> None:
        handler = self.handlers.get(str(frame.get("op")))
        reply: dict[str, Any] = {"k": "rs", "id": frame.get("id")}
        try:
            if handler is None:
                raise KeyError(f"no handler for {frame.get('op')!r}")
            reply.update(ok=True, v=handler(frame.get("a") or {}))
        except Exception as exc:  # the error travels to the caller; the link goes on
            reply.update(ok=False, e=f"{type(exc).__name__}: {exc}")
        with contextlib.suppress(LinkClosed):
            self._send(reply)

    # -- closing ------------------------------------------------------------------------------

    def _shut(self) -> None:
        with self._send_lock:
            if self._closed.is_set():
                return
            self._closed.set()
        with self._pending_lock:
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(LinkClosed(f"{self.name}: channel closed"))
        self._workers.shutdown(wait=False, cancel_futures=True)
        if self.on_close is not None:
            self.on_close()

    def close(self) -> None:
        """Close our end: the peer reads end of file."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if threading.current_thread() is not self._reader and self._reader.is_alive():
            self._reader.join(2)
        self._shut()
