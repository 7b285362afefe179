"""The compact run store (`run_series`): exact round trips on SQLite and PostgreSQL, and the
dashboards read a backtest's curve and predictions from it instead of per-bar rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from db_helpers import make_db
from sqlalchemy import delete, func, select

from atb.dashboards.backtesting import model as bt
from atb.dashboards.market_prediction import model as mp
from atb.dashboards.monitoring import queries as mq
from atb.dashboards.tables import list_runs
from atb.data.loader import load_bars
from atb.db.models.run_records import (
    AccountSnapshot,
    DecisionRecordRow,
    PredictionRecord,
    Run,
    RunSeries,
)
from atb.db.series import ACCOUNT, DECISIONS, PREDICTIONS, decode, encode, read_series
from atb.engine.backtest import BacktestSettings, run_backtest
from atb.engine.metrics import drawdown_curve
from atb.engine.records import RunRecorder
from atb.runtime.context import RunContext
from atb.strategies.sma_crossover import SmaCrossover, SmaCrossoverConfig


def test_floats_round_trip_bit_for_bit() -> None:
    values = np.array([0.0, -0.0, 1.5, np.nan, np.inf, -np.inf, 1e-300, 5e-324, 123456.789])
    codec, n, blob = encode(values)
    back = decode(codec, n, blob)
    assert codec == "f8p" and n == len(values)
    assert back.tobytes() == values.tobytes()


def test_noisy_and_flat_floats_round_trip_and_flat_ones_shrink() -> None:
    rng = np.random.default_rng(7)
    noisy = 10_000 * np.exp(np.cumsum(rng.normal(0, 0.001, 300_000)))  # raw low planes
    flat = np.repeat([10_000.0, 10_250.5, np.nan], 100_000)
    for values in (noisy, flat, np.array([]), rng.normal(size=70_000)):
        codec, n, blob = encode(values)
        assert codec == "f8p" and decode(codec, n, blob).tobytes() == values.tobytes()
    assert len(encode(flat)[2]) < 20_000  # 2.4 MB of doubles
    assert len(encode(noisy)[2]) < 0.9 * noisy.nbytes


def test_runs_recorded_with_the_f8_codec_still_read() -> None:
    import zlib

    values = np.array([1.5, np.nan, -2.0])
    shuffled = np.ascontiguousarray(values.view(np.uint8).reshape(-1, 8).T).tobytes()
    assert decode("f8", 3, zlib.compress(shuffled)).tobytes() == values.tobytes()


def test_times_round_trip_and_irregular_grids_survive() -> None:
    index = pd.DatetimeIndex(
        ["2024-01-01 00:00", "2024-01-01 00:01", "2024-01-01 03:17:00.000001", "2030-05-05"],
        tz="UTC",
    )
    codec, n, blob = encode(index)
    back = decode(codec, n, blob)
    assert codec == "t8" and back.equals(index) and str(back.tz) == "UTC"


def test_text_and_empty_columns_round_trip() -> None:
    assert decode(*encode(["m1", None, "m2"])) == ["m1", None, "m2"]
    assert len(decode(*encode(np.array([], dtype=float)))) == 0
    assert len(decode(*encode(pd.DatetimeIndex([], tz="UTC")))) == 0


def test_text_is_stored_as_distinct_values_and_codes() -> None:
    """A million repeated model ids/reasons: a few distinct strings and a code per row."""
    values = ["already long", None, 'ünïcode "quoted"', "already long", "7"] * 200_000
    codec, n, blob = encode(values)
    assert codec == "cat" and n == len(values) and len(blob) < 50_000
    assert decode(codec, n, blob) == values
    assert decode(*encode([None, None])) == [None, None]
    assert decode(*encode([1, "1", None])) == ["1", "1", None]  # text as before: str(value)
    # objects without a hash (a dict as a reason) are stored as their text, as before
    assert decode(*encode([{"a": 1}, None, "x"])) == ["{'a': 1}", None, "x"]
    # numbers handed as a Python list are numbers, not text
    assert decode(*encode([1.5, None, 2])).tolist() == pytest.approx([1.5, np.nan, 2], nan_ok=True)


def test_runs_recorded_with_the_json_text_codec_still_read() -> None:
    import json
    import zlib

    assert decode("json", 3, zlib.compress(json.dumps(["a", None, "b"]).encode())) == [
        "a",
        None,
        "b",
    ]


def test_a_regular_minute_grid_compresses_to_almost_nothing() -> None:
    index = pd.date_range("2023-01-01", periods=1_000_000, freq="min", tz="UTC")
    _codec, _n, blob = encode(index)
    assert len(blob) < 50_000  # 8 MB of int64 stamps


def test_unknown_codec_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown series codec 'lz9'"):
        decode("lz9", 0, b"")


def _record_backtest(db: Any, bars: pd.DataFrame) -> tuple[str, Any]:
    ctx = RunContext()
    strategy = SmaCrossover(SmaCrossoverConfig(_target_="x", fast=10, slow=30), ctx)
    result = run_backtest(bars, strategy, BacktestSettings(), bar_seconds=3600.0)
    recorder = RunRecorder(db, ctx)
    recorder.begin(strategy="sma_crossover", parameters={}, data_fingerprint="f",
                   data_source=None, data_start=None, data_end=None, bars=len(bars))  # fmt: skip
    confidence = np.linspace(0, 1, len(bars))
    confidence[::7] = np.nan
    predictions = pd.DataFrame(
        {
            "predicted_price": bars["close"].to_numpy() * 1.001,
            "r": np.full(len(bars), 0.001),
            "confidence": confidence,
            "direction": np.where(np.arange(len(bars)) % 5 == 0, np.nan, 1.0),
            "model_id": "m1",
        },
        index=bars.index,
    )
    recorder.write(
        trades=result.trades,
        orders=result.orders,
        positions=result.positions,
        decisions=result.decisions,
        account={
            "times": result.times,
            "balance": result.balance,
            "equity": result.equity,
            "drawdown": result.drawdown,
            "qty": result.qty,
            "close": bars["close"].to_numpy(),
        },
        predictions=predictions,
    )
    recorder.finish(result.metrics, result.result_hash)
    return ctx.run_id, result


def test_backtest_series_are_exact_and_dashboards_read_them(db_url: str) -> None:
    bars = load_bars().iloc[:3000]
    db = make_db(db_url)
    db.start()
    try:
        run_id, result = _record_backtest(db, bars)
        with db.engine.connect() as conn:
            assert conn.scalar(select(func.count()).select_from(AccountSnapshot)) == 0
            assert conn.scalar(select(func.count()).select_from(PredictionRecord)) == 0
            account = read_series(conn, run_id, ACCOUNT, mode="backtest")
            preds = read_series(conn, run_id, PREDICTIONS)
            decisions = read_series(conn, run_id, DECISIONS)
            assert conn.scalar(select(func.count()).select_from(DecisionRecordRow)) == 0
            assert read_series(conn, run_id, ACCOUNT, mode="live") is None
            curve = bt.equity_curve(conn, run_id)
            predicted = mp.load_predictions(conn, run_id, limit=500)
            with_predictions = [r["id"] for r in list_runs(conn, with_predictions=True)]
            stats = mq.account_stats(conn, run_id, "backtest")
            first = mq.first_account_row(conn, run_id, "backtest")
            recent = mq.recent_account(conn, run_id, "backtest", 100)
            newer = mq.new_account(conn, run_id, "backtest", len(bars) - 10, 100)
    finally:
        db.stop()
    assert account is not None and preds is not None and decisions is not None
    assert len(decisions) == len(result.decisions) > 0
    assert decisions["action"].tolist() == [d.action for d in result.decisions]
    assert decisions["reason"].tolist() == [d.reason for d in result.decisions]
    assert decisions["signal"].tolist() == [d.direction for d in result.decisions]
    assert decisions["price"].tolist() == [d.price for d in result.decisions]
    assert list(decisions["time"]) == [d.time for d in result.decisions]
    assert account["time"].tolist() == list(bars.index)
    np.testing.assert_array_equal(account["equity"], result.equity)
    np.testing.assert_array_equal(account["balance"], result.balance)
    np.testing.assert_array_equal(account["drawdown"], drawdown_curve(result.equity, 10_000.0))
    np.testing.assert_array_equal(account["position_qty"], result.qty)
    assert set(np.unique(account["open_positions"])) <= {0.0, 1.0}
    assert np.isnan(preds["confidence"].to_numpy()[::7]).all()
    assert preds["model_id"].tolist() == ["m1"] * len(bars)
    # backtesting dashboard: thinned curve that starts and ends where the run did
    assert len(curve) <= bt.MAX_POINTS and curve["equity"].iloc[-1] == result.equity[-1]
    assert curve["time"].iloc[0] == bars.index[0].tz_localize(None)
    # market_prediction dashboard: the newest 500, oldest first, ids are bar numbers
    assert len(predicted) == 500 and predicted["id"].iloc[-1] == len(bars)
    assert predicted["direction"].iloc[-1] in (None, 1) and predicted["mode"].iloc[0] == "backtest"
    assert run_id in with_predictions
    # monitoring dashboard on a backtest run
    r = result.equity[1:] / result.equity[:-1] - 1
    assert stats["rows"] == len(bars) and stats["n"] == len(r)
    assert stats["sum"] == pytest.approx(r.sum()) and stats["last_id"] == len(bars)
    assert first is not None and first.equity == result.equity[0]
    assert recent["equity"].tolist() == result.equity[-100:].tolist()
    assert newer["id"].tolist() == list(range(len(bars) - 9, len(bars) + 1))


def test_deleting_a_run_deletes_its_series(db_url: str) -> None:
    db = make_db(db_url)
    db.start()
    try:
        run_id, _ = _record_backtest(db, load_bars().iloc[:500])
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(RunSeries)) > 0
            s.execute(delete(Run).where(Run.id == run_id))
        with db.session() as s:
            assert s.scalar(select(func.count()).select_from(RunSeries)) == 0
    finally:
        db.stop()
