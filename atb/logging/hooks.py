"""Record listeners: how the DB journal and the alert router see the log/event stream.

    remove = add_record_listener(fn)

`fn(record)` is called synchronously, in the emitting thread, for every event record
(`event_type` set, whatever the sink levels) and every WARNING-or-worse record, with an
already-redacted dict::

    {"id": UUID str, "timestamp": datetime (UTC), "level": "INFO", "logger": "atb.engine",
     "message": "...", "event_type": "order_event" | None, "name": "order_rejected" | None,
     "fields": {...}, "context": {...}, "exception": {type, module, message, traceback} | None}

`id` is a time-ordered UUID string (UUIDv7 layout, atb.logging.ids.event_id): unique per
record, and cheap to insert into a unique index (the journal's `event_uuid`).

It must be cheap (enqueue, do not write) and must not mutate the dict (it is shared with
the other listeners). A listener that raises is reported once and kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atb.logging import core


def add_record_listener(fn: Callable[[dict[str, Any]], None]) -> Callable[[], None]:
    """Register `fn`; return a function that unregisters it."""
    return core.add_listener(fn)


__all__ = ["add_record_listener"]
