"""Log context: keys that appear on every record made inside (component, strategy, …).

Two layers, merged on read:

* the run layer, process-wide (`set_run_context`): run_id, mode, strategy, symbol. The
  logging node sets it once, so it reaches every thread of the process, including threads
  started by libraries that know nothing about contextvars;
* the local layer, a ContextVar (`set_context`, `use_context`, …): per thread / asyncio
  task. A new thread starts with an empty local layer — the reason the system atb descends
  from lost its context there — so threads atb starts use `ContextThread` / `spawn`, which
  carry the starter's local layer across.

Both layers hold immutable-by-convention dicts (every change makes a new dict), so the
merged view can be cached by identity and a record costs one ContextVar read.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

CONTEXT_KEYS: tuple[str, ...] = ("run_id", "mode", "component", "strategy", "symbol", "session_id")

_EMPTY: dict[str, Any] = {}
_local: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar(
    "atb_log_context", default=_EMPTY
)
_run: dict[str, Any] = {}
# (local dict, run dict, merged): the last merge, reused while neither layer changed.
_merged: tuple[dict[str, Any], dict[str, Any], dict[str, Any]] = (_EMPTY, _run, {})


def current() -> dict[str, Any]:
    """The merged context; callers must not mutate it (it is shared). Hot path."""
    global _merged
    local = _local.get()
    cached = _merged
    if cached[0] is local and cached[1] is _run:
        return cached[2]
    merged = {**_run, **local} if local else _run
    _merged = (local, _run, merged)
    return merged


def get_context() -> dict[str, Any]:
    """A copy of the context records made here would carry."""
    return dict(current())


def set_context(**kw: Any) -> None:
    """Set keys in the local layer (other keys stay); a None value removes the key."""
    new = dict(_local.get())
    for key, value in kw.items():
        if value is None:
            new.pop(key, None)
        else:
            new[key] = value
    _local.set(new)


def update_context(**kw: Any) -> None:
    """Like set_context, but None values are ignored instead of removing keys."""
    set_context(**{k: v for k, v in kw.items() if v is not None})


def clear_context(*keys: str) -> None:
    """Remove these keys from the local layer, or the whole local layer if none given."""
    if not keys:
        _local.set(_EMPTY)
        return
    _local.set({k: v for k, v in _local.get().items() if k not in keys})


@contextmanager
def use_context(**kw: Any) -> Iterator[dict[str, Any]]:
    """Add keys for the duration of a block, then restore what was there."""
    token = _local.set({**_local.get(), **{k: v for k, v in kw.items() if v is not None}})
    try:
        yield current()
    finally:
        _local.reset(token)


def set_run_context(**kw: Any) -> None:
    """Set process-wide keys (visible in every thread); None removes a key."""
    global _run
    new = dict(_run)
    for key, value in kw.items():
        if value is None:
            new.pop(key, None)
        else:
            new[key] = value
    _run = new


def clear_run_context() -> None:
    global _run
    _run = {}


def get_run_context() -> dict[str, Any]:
    return dict(_run)


def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn` bound to a copy of the caller's context: for executors and callbacks."""
    ctx = contextvars.copy_context()

    def run(*args: Any, **kwargs: Any) -> Any:
        return ctx.run(fn, *args, **kwargs)

    return run


class ContextThread(threading.Thread):
    """A Thread that runs in a copy of the context of the thread that created it.

    Every thread atb starts (live loop, journal writer, health server) is one of these,
    so records made there carry the starter's component/strategy/symbol/session_id.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._atb_context = contextvars.copy_context()

    def run(self) -> None:
        self._atb_context.run(super().run)


def spawn(
    target: Callable[..., Any],
    *args: Any,
    name: str | None = None,
    daemon: bool = True,
    **context: Any,
) -> ContextThread:
    """Start `target(*args)` on a ContextThread, with extra context keys for that thread."""

    def body() -> None:
        if context:
            update_context(**context)
        target(*args)

    thread = ContextThread(target=body, name=name, daemon=daemon)
    thread.start()
    return thread
