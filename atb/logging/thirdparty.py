"""Every stdlib/third-party logger writes through atb's pipeline, never to the console itself.

Libraries install console handlers of their own, often after atb configured logging:
panel at import (`panel` logger, propagate=False), bokeh when its server starts, tornado,
ccxt, urllib3, sqlalchemy (`echo`), ray, alembic. Their records would reach stderr
without redaction and without reaching the journal. So, while atb's logging is installed:

* a console handler (a StreamHandler on stdout/stderr) added to any logger other than
  the root is dropped at `addHandler` time and the logger set to propagate to the root,
  where atb's InterceptHandler takes the record;
* loggers configured before that are swept the same way at install;
* `logging.lastResort` (what Python uses for a logger left with no handler and
  propagate=False, as bokeh leaves its own) forwards to atb as well.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from typing import Any

_lock = threading.Lock()
_original_add: Callable[[logging.Logger, logging.Handler], None] | None = None
_original_last_resort: logging.Handler | None = None
_forward: logging.Handler | None = None


def _console_streams() -> tuple[Any, ...]:
    return (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__)


def is_console_handler(handler: logging.Handler) -> bool:
    """A handler writing to the process's stdout/stderr (not a file, not a capture buffer)."""
    if isinstance(handler, logging.FileHandler) or not isinstance(handler, logging.StreamHandler):
        return False
    stream = getattr(handler, "stream", None)
    return stream is not None and any(stream is s for s in _console_streams())


def reclaim(logger: logging.Logger) -> bool:
    """Drop `logger`'s console handlers and let it propagate; True when it changed."""
    changed = False
    for handler in list(logger.handlers):
        if is_console_handler(handler):
            logger.removeHandler(handler)
            changed = True
    if changed or (not logger.handlers and not logger.propagate):
        logger.propagate = True
        changed = True
    return changed


def reclaim_all() -> list[str]:
    """Sweep every logger that exists now; returns the names that were changed."""
    changed: list[str] = []
    for name, existing in list(logging.Logger.manager.loggerDict.items()):
        if isinstance(existing, logging.Logger) and reclaim(existing):
            changed.append(name)
    return changed


def install(forward: logging.Handler) -> None:
    """Route third-party loggers to `forward` (atb's root handler) from now on."""
    global _original_add, _original_last_resort, _forward
    with _lock:
        _forward = forward
        if _original_add is None:
            _original_add = logging.Logger.addHandler
            _original_last_resort = logging.lastResort
            original = _original_add

            def add_handler(self: logging.Logger, handler: logging.Handler) -> None:
                original(self, handler)
                if (
                    _forward is not None
                    and self is not logging.root
                    and is_console_handler(handler)
                ):
                    reclaim(self)

            logging.Logger.addHandler = add_handler  # type: ignore[method-assign, assignment]
        logging.lastResort = forward
    reclaim_all()


def uninstall() -> None:
    """Back to the stdlib's behaviour (tests)."""
    global _original_add, _original_last_resort, _forward
    with _lock:
        _forward = None
        if _original_add is not None:
            logging.Logger.addHandler = _original_add  # type: ignore[method-assign, assignment]
            logging.lastResort = _original_last_resort
            _original_add = None
            _original_last_resort = None
