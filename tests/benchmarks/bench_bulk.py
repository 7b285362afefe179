"""atb.db.bulk.insert_columns (a backtest's trades) vs SQLAlchemy's executemany of row dicts.

Same process, same rows, one SQLite file (WAL) through the `db` node's engine, so the
redaction hook sees both. Baseline: `session.execute(insert(table), [dict, ...])`, what a
writer without the bulk module would do. Target: at least 1.5x the baseline's rows/s.
Run: `nox -s bench -- -k bulk`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import insert, text

from atb.db.bulk import insert_columns
from atb.db.models.base import table_of
from atb.db.models.run_records import Run, TradeRecord
from atb.db.node import Database, DatabaseConfig
from atb.runtime.context import RunContext

N = 100_000
TARGET_RATIO = 1.5
T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(
        DatabaseConfig.model_validate(
            {"_target_": "atb.db.node.Database", "url": f"sqlite:///{tmp_path / 'bulk.db'}"}
        ),
        RunContext(),
    )
    database.start()
    with database.engine.begin() as conn:
        conn.execute(
            insert(Run),
            [{"id": "r", "mode": "backtest", "symbol": "BTCUSDT", "timeframe": "1m",
              "status": "running", "started_at": T0, "config": {}, "overrides": []}],
        )  # fmt: skip
    yield database
    database.stop()


def trade_columns(run_id: str, n: int) -> dict[str, Any]:
    times = list(pd.date_range(T0, periods=n, freq="min").to_pydatetime())
    ones = list(np.ones(n))
    return {
        "run_id": run_id, "mode": "backtest", "trade_no": list(range(n)),
        "position_no": list(range(n)), "symbol": "BTCUSDT", "side": ["long"] * n, "qty": ones,
        "entry_time": times, "entry_price": ones, "exit_time": [t + timedelta(minutes=1)
        for t in times], "exit_price": ones, "fees": ones, "pnl": ones, "return_pct": ones,
        "exit_reason": ["signal"] * n, "bars_held": [1] * n,
    }  # fmt: skip


def _rows_per_second(db: Database, write: Any) -> float:
    t0 = time.perf_counter()
    with db.session() as session:
        write(session)
    return N / (time.perf_counter() - t0)


def test_bulk_insert_columns_vs_executemany(db: Database) -> None:
    table = table_of(TradeRecord)
    columns = trade_columns("r", N)
    names = list(columns)
    lists = [v if isinstance(v, list) else [v] * N for v in columns.values()]
    dicts = [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=True)]
    naive = _rows_per_second(db, lambda s: s.execute(insert(table), dicts))
    bulk = _rows_per_second(db, lambda s: insert_columns(s.connection(), table, columns))
    with db.engine.connect() as conn:
        stored = conn.execute(text("select count(*), count(distinct entry_time) from trades"))
        assert tuple(stored.one()) == (2 * N, N)  # both wrote the same times, same text
    print(f"\n[bulk/sqlite] insert_columns {bulk:,.0f} rows/s | executemany {naive:,.0f} rows/s"
          f" | ratio {bulk / naive:.1f}x")  # fmt: skip
    assert bulk >= TARGET_RATIO * naive, f"{bulk / naive:.2f}x"
