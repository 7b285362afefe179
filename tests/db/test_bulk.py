"""atb.db.bulk on SQLite and PostgreSQL: rows written column-wise or as dicts read back as
the ORM wrote them, text is redacted, and batches of any size land whole."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from db_helpers import insert_run, make_db
from sqlalchemy import insert, select

from atb.db.bulk import insert_columns, insert_dicts, sqlite_times, sqlite_timestamp
from atb.db.models.base import table_of
from atb.db.models.run_records import OrderRecord, TradeRecord
from atb.db.node import Database

T0 = datetime(2024, 1, 1, 12, 30, 15, 123456, tzinfo=UTC)


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = make_db(db_url)
    database.start()
    insert_run(database, "r")
    yield database
    database.stop()


def _orders(n: int, note: str) -> dict[str, Any]:
    return {
        "run_id": "r", "mode": "backtest", "order_no": list(range(n)), "symbol": "BTCUSDT",
        "created_at": pd.DatetimeIndex([T0 + timedelta(minutes=i) for i in range(n)]),
        "side": ["buy", "sell"] * (n // 2), "kind": ["entry"] * n, "order_type": "market",
        "reason": ["signal"] * n, "status": ["filled"] * n,
        "size": np.array([0.5 if i % 3 else np.nan for i in range(n)]),
        "filled_at": [T0 if i % 2 else None for i in range(n)], "qty": [0.1] * n,
        "price": np.arange(n, dtype=float), "fee": None, "position_no": None,
        "exchange_order_id": None, "note": [note if i == 0 else None for i in range(n)],
        "error_code": None,
    }  # fmt: skip


def _read(db: Database) -> list[Any]:
    with db.session() as s:
        rows = s.execute(select(OrderRecord).order_by(OrderRecord.order_no)).scalars().all()
        return [
            (o.order_no, o.created_at.replace(tzinfo=UTC), o.side, o.size, o.qty, o.price,
             None if o.filled_at is None else o.filled_at.replace(tzinfo=UTC), o.note)
            for o in rows
        ]  # fmt: skip


def test_columns_read_back_as_the_orm_wrote_them(db: Database) -> None:
    note = "rejected: https://u:hunter2@h.example/x"
    with db.session() as s:
        insert_columns(s.connection(), table_of(OrderRecord), _orders(10, note))
    bulk = _read(db)
    with db.session() as s:
        s.execute(OrderRecord.__table__.delete())
        s.execute(insert(OrderRecord), [
            {"run_id": "r", "mode": "backtest", "order_no": i, "symbol": "BTCUSDT",
             "created_at": T0 + timedelta(minutes=i), "side": "buy" if i % 2 == 0 else "sell",
             "kind": "entry", "order_type": "market", "reason": "signal", "status": "filled",
             "size": 0.5 if i % 3 else None, "filled_at": T0 if i % 2 else None, "qty": 0.1,
             "price": float(i), "note": note if i == 0 else None}
            for i in range(10)
        ])  # fmt: skip
    assert bulk == _read(db)
    assert "hunter2" not in str(bulk) and "[REDACTED]" in str(bulk[0][-1])
    assert bulk[1][3] == 0.5 and bulk[0][3] is None  # NaN is stored as NULL


@pytest.mark.parametrize("n", [1, 999, 1001, 2345])
def test_dicts_of_any_batch_size_land_whole(db: Database, n: int) -> None:
    rows = [
        {"run_id": "r", "mode": "paper", "trade_no": i, "position_no": i, "symbol": "X",
         "side": "long", "qty": 1.0, "entry_time": T0, "entry_price": 1.0,
         "exit_time": T0 + timedelta(hours=i), "exit_price": 2.0, "fees": 0.0, "pnl": 1.0,
         "return_pct": 1.0, "exit_reason": "signal", "bars_held": 1}
        for i in range(n)
    ]  # fmt: skip
    with db.engine.begin() as conn:
        insert_dicts(conn, table_of(TradeRecord), iter(rows))
    with db.session() as s:
        stored = s.execute(select(TradeRecord.trade_no, TradeRecord.exit_time)).all()
    assert sorted(no for no, _ in stored) == list(range(n))
    assert {t.replace(tzinfo=UTC) for _, t in stored} == {r["exit_time"] for r in rows}


def test_sqlite_time_text_is_sqlalchemys() -> None:
    times = [T0, T0.replace(microsecond=0), T0.astimezone(UTC) + timedelta(days=400)]
    assert sqlite_times(pd.DatetimeIndex(times)) == [sqlite_timestamp(t) for t in times]
    assert sqlite_timestamp(T0) == "2024-01-01 12:30:15.123456"
