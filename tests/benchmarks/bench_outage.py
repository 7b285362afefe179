"""A 60 s PostgreSQL hard stop in the middle of a paper and of a live session, and a SQLite
file locked by another writer for 30 s (issue 14).

Real sessions on this process's runner (bench harness: atb_testkit.outage): paper on the
replay feed (one new candle per poll), live against FakeBinance (real ccxt, real orders),
`live.check_interval=0.02`, every record on. The fault: `pg_ctl stop -m immediate`, then
start 60 s later (SQLite: `BEGIN IMMEDIATE` held by another connection for 30 s).

Reported per session: median iteration time before / during / after the outage and the
during/before ratio (goal <= 1.10, asserted), iterations during the outage, orders sent
during the outage, failed iterations (must be 0), and per table the rows lost (expected
from the engine's books, the emitted order events and, live, FakeBinance's order list,
minus the distinct rows stored) and duplicates (rows minus distinct keys): both must be 0.

Run: `nox -s bench -- -k outage` (ATB_BENCH_OUTAGE_SECONDS / ATB_BENCH_LOCK_SECONDS change
the outage lengths).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from atb_testkit import FakeBinance
from atb_testkit.outage import (
    InProcessSession,
    Phases,
    query,
    record_counts,
    sqlite_locked,
    wait_for,
)
from atb_testkit.pgtemp import TempPostgres, find_pg_bin

OUTAGE = float(os.environ.get("ATB_BENCH_OUTAGE_SECONDS", "60"))
GOAL = 1.10  # median iteration time during the outage / before it
BEFORE = 600  # iterations before the outage
LOCK = float(os.environ.get("ATB_BENCH_LOCK_SECONDS", "30"))
COMMON = ["live.check_interval=0.02", "logging.sinks=[]", "runner.write_outputs=false",
          "health=off", "journal.retry_initial=0.25", "journal.retry_max=2.0"]  # fmt: skip
PAPER = ["mode=paper", "exchange=replay", "exchange.step=true", "strategy=sma_crossover",
         "strategy.fast=2", "strategy.slow=3", "live.allow_shorts=true"]  # fmt: skip


class Names:
    def __init__(self) -> None:
        from atb.logging.hooks import add_record_listener

        self.names: list[str] = []
        self.remove = add_record_listener(lambda r: self.names.append(str(r.get("name"))))


def _run(
    session: InProcessSession, down: Any, up: Any, seconds: float, url: str, label: str,
    exchange_orders: Any = None,
) -> None:  # fmt: skip
    names = Names()
    try:
        session.start()
        engine = session.engine
        # ~14 s of baseline: with 200 iterations (5 s) the "before" median alone moved by
        # +-10% between runs on a shared 2-core box, too noisy for an asserted ratio.
        wait_for(lambda: engine.iterations >= BEFORE, 120, f"{BEFORE} iterations before")
        sent0 = exchange_orders() if exchange_orders else len(engine.path.orders)
        i_down = engine.iterations
        down()
        time.sleep(seconds)
        i_up = engine.iterations
        sent1 = exchange_orders() if exchange_orders else len(engine.path.orders)
        up()
        log = engine.recorder.log
        wait_for(lambda: log.pending == 0, 120, lambda: f"records written {log.state()}")
        wait_for(lambda: engine.iterations >= i_up + 200, 120, "200 iterations after")
        session.stop()
    finally:
        names.remove()
        if session.thread.is_alive():
            session.ctx.stop_event.set()
            session.thread.join(60)
    run_id = session.ctx.run_id
    phases = Phases.of([e for e, _ in list(engine.stats)], i_down, i_up, skip=10)
    before, during, after = phases.medians()
    counts = record_counts(url, run_id)
    expected = {
        "orders": len(engine.path.orders),
        "positions": len(engine.portfolio.positions),
        "trades": len(engine.portfolio.trades),
        "account_history": engine.bar_index,
    }
    filled_rows = query(url, "SELECT count(*) FROM orders WHERE run_id=:r AND status='filled'",
                        r=run_id)[0][0]  # fmt: skip
    lost = {t: expected[t] - counts[t][1] for t in expected}
    lost["filled orders vs order_filled events"] = names.names.count("order_filled") - filled_rows
    if exchange_orders is not None:
        lost["filled orders vs exchange orders"] = exchange_orders() - filled_rows
    dups = {t: rows - distinct for t, (rows, distinct) in counts.items()}
    failed = names.names.count("iteration_failed") + names.names.count("cooldown")
    print(
        f"\n[{label}] {seconds:g} s outage; median iteration before / during / after: "
        f"{before * 1e3:.2f} / {during * 1e3:.2f} / {after * 1e3:.2f} ms "
        f"(during/before {during / before:.3f}, goal <= {GOAL}; after/before "
        f"{after / before:.3f}); iterations during the outage "
        f"{i_up - i_down}, orders sent during it {sent1 - sent0}, failed iterations {failed}"
        f"\n[{label}] rows lost {lost} (all 0 = none lost); duplicates {dups}; rows stored "
        f"{ {t: c[0] for t, c in counts.items()} }; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} cores"
    )
    assert failed == 0
    assert all(v == 0 for v in lost.values()), lost
    assert all(v == 0 for v in dups.values()), dups
    # The issue 14 goal; a bench may assert a ratio (the default test run collects no bench_*).
    assert during / before <= GOAL, f"{label}: during/before {during / before:.3f} > {GOAL}"


def _db(url: str, tmp: Path) -> list[str]:
    args = [f"db.url={url}", f"journal.spill_path={tmp / 'spill.jsonl'}",
            f"live.record_log_dir={tmp / 'records'}"]  # fmt: skip
    return ["db=postgres", "db.connect_timeout=2", *args] if url.startswith("postgres") else args


def _pg() -> TempPostgres:
    if find_pg_bin() is None:
        pytest.skip("PostgreSQL binaries not found")
    pg = TempPostgres()
    pg.init()
    pg.start()
    return pg


def test_postgres_hard_stop_mid_paper_session(tmp_path: Path) -> None:
    pg = _pg()
    try:
        url = pg.create_database("bench_paper")
        session = InProcessSession([*PAPER, *COMMON, *_db(url, tmp_path)], "paper", "sma_crossover")
        _run(session, lambda: pg.stop("immediate"), pg.start, OUTAGE, url, "paper, postgres")
    finally:
        pg.destroy()


def test_postgres_hard_stop_mid_live_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "live"))
    from live_helpers import QUICK, SLOW, SMA, Advancer, zigzag_candles

    pg = _pg()
    try:
        with FakeBinance(
            candles=zigzag_candles(n=6000, leg=6), warmup=SLOW + 30,
            balances={"USDT": 10_000.0, "BTC": 0.0},
        ) as fake:  # fmt: skip
            monkeypatch.setenv("BINANCE_API_KEY", fake.api_key)
            monkeypatch.setenv("BINANCE_API_SECRET", fake.api_secret)
            url = pg.create_database("bench_live")
            args = ["mode=live", "live.i_understand_the_risks=true", *SMA, *QUICK, *COMMON,
                    f"exchange.base_url={fake.url}", *_db(url, tmp_path)]  # fmt: skip
            with Advancer(fake):
                session = InProcessSession(args, "live", "sma_crossover")
                _run(session, lambda: pg.stop("immediate"), pg.start, OUTAGE, url,
                     "live, postgres", exchange_orders=lambda: len(fake.orders))  # fmt: skip
    finally:
        pg.destroy()


def test_sqlite_locked_by_another_writer(tmp_path: Path) -> None:
    db_path = tmp_path / "atb.db"
    url = f"sqlite:///{db_path}"
    held: list[Any] = []

    def down() -> None:
        cm = sqlite_locked(db_path)
        cm.__enter__()
        held.append(cm)

    session = InProcessSession([*PAPER, *COMMON, *_db(url, tmp_path)], "paper", "sma_crossover")
    _run(session, down, lambda: held.pop().__exit__(None, None, None), LOCK, url,
         "paper, sqlite locked")  # fmt: skip
