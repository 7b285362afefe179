"""Copies the loop's heartbeat to the `run_heartbeats` row, from its own thread.

The trading loop never waits on this (DESIGN: the loop never waits on observability): it
only beats `ctx.probes.heartbeat` in memory; this thread writes what changed every `period`
seconds. It writes the heartbeat's own times, never "now", so a hung loop's row stops
advancing even though this thread still runs, and a killed process's row simply ages.
A database that is down costs one `db_connection_failed` event per outage (the default
`database_connection_failures` alert rule fires on it) and `db_reconnected` when a write
succeeds again (the rule resolves); never the loop. Meanwhile the writer retries on a
backoff (its period doubling to `MAX_PERIOD`) instead of every period: a refused connect
is a traceback through the pool and the driver, and at a 0.1 s period ten of those a
second compete with the loop for the GIL for the whole outage.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Engine, Table, insert, update

from atb.db.models.heartbeats import RunHeartbeat
from atb.logging.context import spawn
from atb.logging.events import log_db_event
from atb.runtime.probes import Heartbeat

MAX_PERIOD = 1.0
"""Seconds between writes at most: readers add this to the silence limit (write lag)."""


def _failure_event(exc: Exception) -> str:
    from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

    if isinstance(exc, OperationalError | InterfaceError | DisconnectionError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return "db_connection_failed"
    return "db_error"


def _dt(wall: float | None) -> datetime | None:
    return None if wall is None else datetime.fromtimestamp(wall, UTC)


class HeartbeatWriter:
    def __init__(self, engine: Engine, run_id: str, heartbeat: Heartbeat) -> None:
        self.engine = engine
        self.run_id = run_id
        self.heartbeat = heartbeat
        interval = heartbeat.interval or MAX_PERIOD
        self.period = min(MAX_PERIOD, max(0.1, interval / 2))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: tuple[Any, ...] | None = None
        self._inserted = False
        self._failing = False
        self._failed_at = 0.0
        self._backoff = 0.0
        self._retry_at = 0.0

    def start(self) -> None:
        self.write()
        self._thread = spawn(self._run, name="atb-heartbeat-writer", component="heartbeat")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.write(force=True)  # the final state: stopped, with its reason

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.write()

    def row(self) -> dict[str, Any]:
        hb = self.heartbeat
        return {
            "pulse_at": _dt(hb.last_pulse_wall),
            "beat_at": _dt(hb.last_beat_wall),
            "started_at": _dt(hb.started_at) or datetime.now(UTC),
            "interval_seconds": hb.interval,
            "extra_wait_seconds": hb.extra_wait,
            "iterations": hb.iterations,
            "failures": hb.failures,
            "last_error": hb.last_error,
            "stopped_at": _dt(hb.stopped_at),
            "stop_reason": hb.stop_reason,
            "pid": os.getpid(),
        }

    def write(self, force: bool = False) -> None:
        if self._failing and not force and time.monotonic() < self._retry_at:
            return
        row = self.row()
        key = tuple(row.values())
        if key == self._last:
            return
        row["written_at"] = datetime.now(UTC)
        table = cast(Table, RunHeartbeat.__table__)
        try:
            with self.engine.begin() as conn:
                if self._inserted:
                    conn.execute(update(table).where(table.c.run_id == self.run_id).values(**row))
                else:
                    conn.execute(insert(table).values(run_id=self.run_id, **row))
                    self._inserted = True
        except Exception as exc:  # the database may be down: the loop goes on regardless
            # Capped at MAX_PERIOD: readers allow that much write lag, so the row is current
            # again at most that long after the database is back.
            self._backoff = min(MAX_PERIOD, max(self.period, self._backoff * 2))
            self._retry_at = time.monotonic() + self._backoff
            if not self._failing:
                # The default alert rule database_connection_failures listens for these;
                # once per outage, so a dead database is one alert, not one per second.
                self._failing = True
                self._failed_at = time.monotonic()
                log_db_event(
                    _failure_event(exc),
                    level="ERROR",
                    message=f"database unreachable from the heartbeat writer: {exc}"[:500],
                    error=type(exc).__name__,
                    detail=str(exc)[:300],
                    dialect=self.engine.dialect.name,
                )
            return
        if self._failing:
            log_db_event(
                "db_reconnected",
                message="database reachable again (heartbeat written)",
                down_seconds=round(time.monotonic() - self._failed_at, 3),
                dialect=self.engine.dialect.name,
            )
        self._failing = False
        self._backoff = 0.0
        self._last = key
