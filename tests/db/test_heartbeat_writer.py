"""The heartbeat writer during a database outage: one `db_connection_failed` event, retries
on a backoff capped at MAX_PERIOD (not one refused connect per period), and
`db_reconnected` with the row current again within MAX_PERIOD of the database's return."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from db_helpers import SwitchableEngine, insert_run
from sqlalchemy import text

from atb.engine.heartbeat_store import MAX_PERIOD, HeartbeatWriter
from atb.logging.hooks import add_record_listener
from atb.runtime.probes import Heartbeat


@pytest.mark.slow  # a real 2 s outage and up to MAX_PERIOD of recovery
def test_an_outage_is_reported_once_and_retried_on_a_capped_backoff(
    database: Any, tmp_path: Path
) -> None:
    insert_run(database, "hb")
    engine = SwitchableEngine(database.engine)
    heartbeat = Heartbeat()
    heartbeat.start(interval=0.02)  # period 0.1 s, the outage bench's
    writer = HeartbeatWriter(engine, "hb", heartbeat)  # type: ignore[arg-type]
    events: list[str] = []
    remove = add_record_listener(lambda r: events.append(str(r.get("name"))))
    try:
        writer.write()
        engine.down = True
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # the writer's thread, at 10x its pace
            heartbeat.beat()
            writer.write()
            time.sleep(0.01)
        # 0.1, 0.2, 0.4, 0.8 s then every MAX_PERIOD: ~5 attempts in 2 s, not 20 (or 200).
        assert 3 <= engine.attempts <= 6, engine.attempts
        assert events.count("db_connection_failed") == 1
        engine.down = False
        back = time.monotonic()
        while "db_reconnected" not in events:
            assert time.monotonic() - back <= MAX_PERIOD + 0.2, "not retried within MAX_PERIOD"
            heartbeat.beat()
            writer.write()
            time.sleep(0.01)
    finally:
        remove()
    with database.engine.connect() as conn:
        iterations = conn.execute(
            text("SELECT iterations FROM run_heartbeats WHERE run_id = 'hb'")
        ).scalar_one()
    assert iterations == heartbeat.iterations
