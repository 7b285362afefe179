"""A real PostgreSQL dies mid-session and comes back 10 s later.

The "session" is a trading loop in this process that emits its events through atb.logging
(engine/order/decision events every iteration, as the paper loop does) with the real `db`
and `journal` nodes listening. The server is killed with `pg_ctl stop -m immediate` (no
checkpoint, clients cut off) and restarted 10 s later. Afterwards every event is in
system_events exactly once, and the loop's iteration time did not grow during the outage.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import pytest
from db_helpers import event_counts, make_db, uuids

from atb.db.journal import Journal, JournalConfig
from atb.db.pgtemp import TempPostgres, find_pg_bin
from atb.runtime.context import RunContext

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DOWN_FOR = 10.0


def _work(n: int = 3000) -> float:
    """A fixed slice of CPU, standing in for the strategy's bar handling."""
    acc = 0.0
    for i in range(n):
        acc += (i % 7) * 0.5
    return acc


def test_postgres_killed_mid_session_loses_nothing(tmp_path: Path) -> None:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    events = pytest.importorskip("atb.logging.events")
    from atb.logging import configure_logging
    from atb.logging.hooks import add_record_listener

    configure_logging({"sinks": []})  # events reach listeners; nothing is printed
    seen: list[str] = []
    remove_probe = add_record_listener(lambda r: seen.append(r["id"]))
    pg = TempPostgres()
    pg.init()
    pg.start()
    try:
        db = make_db(pg.create_database("outage"), connect_timeout=2)
        db.start()
        journal = Journal(
            JournalConfig.model_validate(
                {
                    "_target_": "atb.db.journal.Journal",
                    "spill_path": str(tmp_path / "spill.jsonl"),
                    "retry_initial": 0.25,
                    "retry_max": 1.0,
                }
            ),
            RunContext(run_id="outage-session", mode="paper"),
            db=db,
        )
        journal.start()
        timings: list[tuple[float, float]] = []  # (start offset, iteration seconds)
        phases: dict[str, float] = {}
        stop = threading.Event()

        def chaos() -> None:
            time.sleep(3.0)
            phases["down"] = time.monotonic()
            pg.stop("immediate")
            time.sleep(DOWN_FOR)
            phases["up"] = time.monotonic()
            pg.start()
            time.sleep(4.0)
            stop.set()

        t_start = time.monotonic()
        chaos_thread = threading.Thread(target=chaos, daemon=True)
        chaos_thread.start()
        events.log_engine_event("engine_start", message="outage test session")
        i = 0
        while not stop.is_set():
            t0 = time.perf_counter()
            _work()
            events.log_decision_event("decision", signal=1, action="none", bar=i)
            events.log_order_event("order_filled", order_no=i, qty=0.1, price=100.0 + i)
            events.log_engine_event("heartbeat", iteration=i)
            timings.append((time.monotonic() - t_start, time.perf_counter() - t0))
            i += 1
            time.sleep(0.002)
        events.log_engine_event("engine_stop", iterations=i)
        chaos_thread.join()

        state_during = journal.state()
        assert journal.flush(timeout=30)
        deadline = time.monotonic() + 30
        while journal.state()["spill_pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
        journal.stop()

        # Every event exactly once.
        assert journal.state()["spilled"] > 0, "the outage never reached the journal"
        assert journal.state()["spill_pending"] == 0
        rows, distinct = event_counts(db)
        assert rows == distinct, "an event was stored twice"
        assert set(seen) <= uuids(db), f"{len(set(seen) - uuids(db))} events missing"
        assert rows == len(set(seen))

        # The loop did not slow down while the database was down.
        down_start = phases["down"] - t_start
        up_at = phases["up"] - t_start
        before = [d for t, d in timings if 0.5 < t < down_start]
        during = [d for t, d in timings if down_start + 0.5 < t < up_at]
        assert len(before) > 50 and len(during) > 50
        med_before, med_during = statistics.median(before), statistics.median(during)
        p95 = statistics.quantiles(during, n=20)[-1]
        p95_before = statistics.quantiles(before, n=20)[-1]
        print(
            f"iterations: {len(timings)}; median before {med_before * 1e3:.2f} ms, during outage "
            f"{med_during * 1e3:.2f} ms; p95 {p95_before * 1e3:.2f} -> {p95 * 1e3:.2f} ms; "
            f"spilled {journal.state()['spilled']}, replayed {journal.state()['replayed']}, "
            f"error during outage: {state_during['last_error']}"
        )
        assert med_during <= med_before * 1.5 + 0.001
        db.stop()
    finally:
        remove_probe()
        pg.destroy()
