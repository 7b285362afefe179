"""A real PostgreSQL dies in the middle of a paper-trading session and comes back 10 s later.

The session is the real run graph (`mode=paper exchange=replay db=postgres`: logging, db,
journal, replay feed, strategy, live engine) run in this process by the runner. The server
is killed with `pg_ctl stop -m immediate` (no checkpoint, clients cut off) and restarted
10 s later. Afterwards every event the session emitted is in system_events exactly once,
and the trading loop's iteration time did not grow while the database was down.

Run records are off (`live.record.enabled=false`): they are the engine's synchronous
writes, not the journal's; this test is about the journal keeping the loop independent of
the database.
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from atb_testkit.pgtemp import TempPostgres, find_pg_bin
from db_helpers import event_counts, make_db, uuids
from sqlalchemy import text

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

DOWN_FOR = 10.0


def _compose(url: str, spill: Path) -> Any:
    from hydra import compose, initialize_config_dir

    from atb.__main__ import CONFIG_DIR

    overrides = [
        "mode=paper",
        "exchange=replay",
        "exchange.step=true",  # one new candle per poll: every iteration does full work
        "strategy=sma_crossover",
        "strategy.fast=2",  # a signal on most bars: orders, positions, decisions to journal
        "strategy.slow=3",
        "live.allow_shorts=true",
        "live.check_interval=0.02",
        "live.record.enabled=false",
        "health=off",
        "db=postgres",
        f"db.url={url}",
        "db.connect_timeout=2",
        f"journal.spill_path={spill}",
        "journal.retry_initial=0.25",
        "journal.retry_max=1.0",
        "logging.sinks=[]",  # events still reach the journal; nothing is printed
        "runner.write_outputs=false",
    ]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose("config", overrides=overrides)


def _wait(cond: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_postgres_killed_mid_paper_session_loses_nothing(tmp_path: Path) -> None:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    from atb.config.validate import validate_config
    from atb.logging.hooks import add_record_listener
    from atb.runtime.context import RunContext
    from atb.runtime.runner import Runner

    seen: list[str] = []
    remove_probe = add_record_listener(lambda r: seen.append(r["id"]))
    pg = TempPostgres()
    pg.init()
    pg.start()
    try:
        url = pg.create_database("outage")
        validated = validate_config(_compose(url, tmp_path / "spill.jsonl"))
        ctx = RunContext(mode="paper", strategy="sma_crossover")
        runner = Runner(validated, ctx)
        result: dict[str, Any] = {}
        session = threading.Thread(target=lambda: result.update(summary=runner.run()))
        session.start()
        _wait(lambda: "live" in runner.nodes and runner.nodes["live"].iterations >= 60, 60)
        engine, journal = runner.nodes["live"], runner.nodes["journal"]

        i_down = engine.iterations
        pg.stop("immediate")
        time.sleep(DOWN_FOR)
        i_up = engine.iterations
        state_down = journal.state()
        pg.start()
        _wait(lambda: journal.state()["db_available"] and not journal.spill_pending, 30)
        time.sleep(1.0)
        ctx.stop_event.set()  # what SIGTERM does: finish the iteration, stop every node
        session.join(60)
        assert not session.is_alive()
        assert result["summary"]["iterations"] > i_up > i_down

        # Exactly once: everything the session emitted, nothing twice.
        state = journal.state()
        assert state_down["db_available"] is False and state["spilled"] > 0
        assert state["spill_pending"] == 0 and state["dropped"] == 0
        db = make_db(url)
        rows, distinct = event_counts(db)
        stored = uuids(db)
        with db.engine.connect() as conn:
            # Alerts (the router's "journal_spilling") reach the journal through emit(),
            # not through the log listener this test watches.
            emitted = {
                r[0]
                for r in conn.execute(
                    text("SELECT event_uuid FROM system_events WHERE event_type = 'ALERT'")
                )
            }
        db.stop()
        assert rows == distinct, "an event was stored twice"
        missing = set(seen) - stored
        assert not missing, f"{len(missing)} of {len(set(seen))} events missing"
        assert stored - set(seen) <= emitted
        assert len(seen) == len(set(seen)) and rows >= 300

        # The loop did not slow down while the database was down.
        stats = [elapsed for elapsed, _net in list(engine.stats)]
        before = stats[10:i_down]
        during = stats[i_down + 5 : i_up]
        assert len(before) >= 40 and len(during) >= 100
        med_before, med_during = statistics.median(before), statistics.median(during)
        p90_before = statistics.quantiles(before, n=10)[-1]
        p90_during = statistics.quantiles(during, n=10)[-1]
        print(
            f"\niterations {result['summary']['iterations']} ({i_up - i_down} during the "
            f"outage); iteration median {med_before * 1e3:.2f} -> {med_during * 1e3:.2f} ms, "
            f"p90 {p90_before * 1e3:.2f} -> {p90_during * 1e3:.2f} ms; events {rows}, spilled "
            f"{state['spilled']}, replayed {state['replayed']}; outage error: "
            f"{state_down['last_error']}"
        )
        assert med_during <= med_before * 1.5 + 0.001
    finally:
        remove_probe()
        pg.destroy()
