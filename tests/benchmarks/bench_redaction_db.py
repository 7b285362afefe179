"""Cost of redacting every DB text parameter (issue 14), on a per-bar record table.

The `db` node's engine passes every text parameter of every statement through the run's
redactor (atb.db.node._install_redaction). Baseline in the same run: the same engine with
that hook removed. Both write one account_history row per bar of the bundled BTCUSDT 1h
file (9 241 rows: run id, mode and timestamp as text, the rest numbers) into a fresh
SQLite file in one executemany, best of several interleaved repetitions.
Target: the hook costs <= 10 % of the record step. Run: `nox -s bench` or
`pytest tests/benchmarks/bench_redaction_db.py -s -o 'python_files=bench_*.py'`.
"""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import event, insert

from atb.db.migrate import upgrade
from atb.db.models.run_records import AccountSnapshot, Run
from atb.db.node import DatabaseConfig, build_engine

ROWS = 9_241
REPS = 9


def _rows(run_id: str) -> list[dict[str, object]]:
    from datetime import UTC, datetime, timedelta

    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    return [
        {"run_id": run_id, "mode": "backtest", "time": t0 + timedelta(hours=i),
         "balance": 10_000.0, "equity": 10_000.0 + i * 0.1, "drawdown": 0.0,
         "position_qty": 0.0, "open_positions": 0, "exposure": 0.0}
        for i in range(ROWS)
    ]  # fmt: skip


def _write(tmp: Path, name: str, hooked: bool) -> float:
    engine = build_engine(
        DatabaseConfig.model_validate({"_target_": "x", "url": f"sqlite:///{tmp / name}"})
    )
    if not hooked:
        for fn in list(engine.dispatch.before_cursor_execute):
            event.remove(engine, "before_cursor_execute", fn)
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(insert(Run), [{"id": name, "mode": "backtest", "symbol": "BTCUSDT",
                                    "timeframe": "1h", "config": {"a": 1}}])  # fmt: skip
    rows = _rows(name)
    start = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(insert(AccountSnapshot), rows)
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def test_db_redaction_hook_cost(tmp_path: Path) -> None:
    hooked, plain = [], []
    for i in range(REPS):
        plain.append(_write(tmp_path, f"p{i}.db", hooked=False))
        hooked.append(_write(tmp_path, f"h{i}.db", hooked=True))
    ratio = min(hooked) / min(plain)
    print(
        f"\n[bench] DB text redaction: {ROWS} bar rows, best of {REPS}: with hook "
        f"{min(hooked) * 1000:.1f} ms, without {min(plain) * 1000:.1f} ms, ratio {ratio:.3f}"
    )
    assert ratio <= 1.10
