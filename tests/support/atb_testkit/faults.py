"""Scriptable faults for :class:`atb_testkit.fake_binance.FakeBinance`.

Tests drive the fault script from their own thread while the server's IOLoop thread consumes
faults, so every mutation happens under one lock and callers only ever see copies.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

FaultKind = Literal["http", "timeout", "malformed_json", "disconnect", "reject_order"]

#: Binance's wording; ccxt maps this exact message to ``InsufficientFunds``.
INSUFFICIENT_BALANCE_MSG = "Account has insufficient balance for requested action."

_SIMPLE_KINDS: frozenset[str] = frozenset(
    {"timeout", "malformed_json", "disconnect", "reject_order"}
)
_HTTP_KIND = re.compile(r"^http_(\d{3})$")

# Switches are server-wide states rather than per-request faults; listeners get
# ("offline" | "frozen", new_value) so the server can rebind sockets or pin the kline cursor.
Listener = Callable[[str, bool], None]


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted fault. ``remaining`` is ``None`` for "until cleared"."""

    id: int
    kind: FaultKind
    status: int | None = None
    path: str | None = None
    method: str | None = None
    remaining: int | None = 1
    delay: float = 2.0
    retry_after: int | None = None
    code: int | None = None
    msg: str | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.path is not None and self.path != path:
            return False
        return self.method is None or self.method == method.upper()


class FaultScript:
    """Thread-safe list of pending faults plus two switches (offline, frozen candles).

    Per-request kinds, used with :meth:`add`:

    * ``"http_<status>"`` (``http_500``, ``http_503``, ``http_429``, ``http_418`` ...): answer
      with that status. 5xx bodies are plain text like a gateway's; 429/418 carry ``Retry-After``
      and Binance's ``-1003`` JSON; pass ``code``/``msg`` for any other Binance JSON error.
    * ``"timeout"``: hold the request for ``delay`` seconds, then process it normally, exactly as a
      slow exchange would (so an order may still be placed after the client gave up).
    * ``"malformed_json"``: answer 200 with a truncated JSON document.
    * ``"disconnect"``: drop the TCP connection without answering.
    * ``"reject_order"``: only consulted when an order is placed (after authentication);
      answers 400 with ``code``/``msg``. :meth:`reject_orders` is the convenient spelling.

    ``times`` is 1 for one-shot, N for N hits, ``None`` until cleared. ``path`` (exact, e.g.
    ``"/api/v3/klines"``) and ``method`` narrow which requests a fault hits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._next_id = 1
        self._offline = False
        self._frozen = False
        self._listeners: list[Listener] = []

    # -- scripting ---------------------------------------------------------------------------

    def add(
        self,
        kind: str,
        *,
        path: str | None = None,
        method: str | None = None,
        times: int | None = 1,
        delay: float = 2.0,
        retry_after: int | None = None,
        code: int | None = None,
        msg: str | None = None,
    ) -> Fault:
        if times is not None and times < 1:
            raise ValueError("times must be >= 1, or None for 'until cleared'")
        status: int | None = None
        match = _HTTP_KIND.match(kind)
        if match:
            status = int(match.group(1))
            if not 400 <= status <= 599:
                raise ValueError(f"http fault status must be 4xx/5xx, got {status}")
            fault_kind: FaultKind = "http"
            if status in (418, 429) and retry_after is None:
                retry_after = 1
        elif kind in _SIMPLE_KINDS:
            fault_kind = kind  # type: ignore[assignment]
        else:
            raise ValueError(
                f"unknown fault kind {kind!r}; use http_<status> or one of "
                f"{', '.join(sorted(_SIMPLE_KINDS))}"
            )
        with self._lock:
            fault = Fault(
                id=self._next_id,
                kind=fault_kind,
                status=status,
                path=path,
                method=method.upper() if method else None,
                remaining=times,
                delay=delay,
                retry_after=retry_after,
                code=code,
                msg=msg,
            )
            self._next_id += 1
            self._faults.append(fault)
        return fault

    def reject_orders(
        self, code: int = -2010, msg: str = INSUFFICIENT_BALANCE_MSG, times: int | None = 1
    ) -> Fault:
        """Reject the next order placement(s) with a Binance error (default: no balance)."""
        return self.add(
            "reject_order", path="/api/v3/order", method="POST", times=times, code=code, msg=msg
        )

    def remove(self, fault: Fault) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if f.id != fault.id]

    def freeze_candles(self) -> None:
        """Klines keep returning what they return now, however far the clock advances."""
        self._switch("frozen", True)

    def unfreeze_candles(self) -> None:
        self._switch("frozen", False)

    def go_offline(self) -> None:
        """Stop listening and drop open connections: clients see 'connection refused'."""
        self._switch("offline", True)

    def go_online(self) -> None:
        self._switch("offline", False)

    def clear(self) -> None:
        """Remove every fault and turn both switches off."""
        with self._lock:
            self._faults.clear()
        self._switch("frozen", False)
        self._switch("offline", False)

    # -- inspection --------------------------------------------------------------------------

    @property
    def candles_frozen(self) -> bool:
        with self._lock:
            return self._frozen

    @property
    def offline(self) -> bool:
        with self._lock:
            return self._offline

    def active(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    # -- server side -------------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def take(self, method: str, path: str, kinds: frozenset[str]) -> Fault | None:
        """Consume one hit of the first pending fault of ``kinds`` matching the request."""
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.kind not in kinds or not fault.matches(method, path):
                    continue
                remaining = None if fault.remaining is None else fault.remaining - 1
                hit = dataclasses.replace(fault, remaining=remaining, hits=fault.hits + 1)
                if remaining == 0:
                    del self._faults[i]
                else:
                    self._faults[i] = hit
                return hit
        return None

    def _switch(self, name: str, value: bool) -> None:
        with self._lock:
            current = self._offline if name == "offline" else self._frozen
            if current == value:
                return
            if name == "offline":
                self._offline = value
            else:
                self._frozen = value
            listeners = list(self._listeners)
        # Outside the lock: the offline listener blocks until the IOLoop has rebound sockets.
        for listener in listeners:
            listener(name, value)
