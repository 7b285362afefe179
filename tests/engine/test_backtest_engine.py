"""The backtest driver and node: bar skipping changes nothing, runs are deterministic and
recorded, the runner reports failures."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock

import numpy as np
import pandas as pd
import pytest
from engine_helpers import ScriptedStrategy, make_bars, run_config, strategy_config
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from atb.config.validate import validate_config
from atb.data.loader import load_bars
from atb.db.models.run_records import (
    AccountSnapshot,
    DecisionRecordRow,
    OrderRecord,
    PositionRecord,
    PredictionRecord,
    Run,
    TradeRecord,
)
from atb.db.series import ACCOUNT, PREDICTIONS, read_series
from atb.engine.backtest import BacktestSettings, run_backtest
from atb.engine.risk import RiskSettings
from atb.runtime.context import RunContext
from atb.runtime.errors import ConfigError, NodeError
from atb.runtime.runner import Runner
from atb.strategies.base import SignalFrame, Strategy
from atb.strategies.sma_crossover import SmaCrossover, SmaCrossoverConfig


class ArrayStrategy(Strategy):
    def __init__(self, frame: SignalFrame) -> None:
        super().__init__(strategy_config(), RunContext())
        self.frame = frame

    def signals(self, bars: pd.DataFrame) -> SignalFrame:
        return self.frame


def run_graph(cfg: dict[str, Any], **ctx: Any) -> tuple[Runner, Any]:
    validated = validate_config(cfg)
    runner = Runner(validated, RunContext(mode="backtest", strategy="sma_crossover", **ctx))
    return runner, runner.run()


@pytest.fixture(scope="module")
def bundled() -> pd.DataFrame:
    return load_bars()


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    sl=st.sampled_from([None, 0.01, 0.03]),
    tp=st.sampled_from([None, 0.02, 0.05]),
    shorts=st.booleans(),
    dense=st.booleans(),
    position_size=st.sampled_from([None, 0.5, 0.0]),
    max_position=st.sampled_from([1.0, 0.3]),
    lazy=st.booleans(),
)
def test_skipping_idle_bars_changes_nothing(
    seed: int,
    sl: float | None,
    tp: float | None,
    shorts: bool,
    dense: bool,
    position_size: float | None,
    max_position: float,
    lazy: bool,
) -> None:
    """Stepping only where something can happen, and recording quiet signals in bulk
    (dense: most bars signal, as ml_basic's do), decides exactly what stepping every bar
    does: same orders, equity and decisions, reasons and all."""
    rng = np.random.default_rng(seed)
    n = 300
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate(([100.0], close[:-1])) * (1 + rng.normal(0, 0.002, n))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, n))
    bars = make_bars(list(zip(open_, high, low, close, strict=True)))
    # 2: a strategy off the -1/0/1 contract; risk.decide calls it "hold" on either path
    choices = [0, 1, 1, -1, -1, 2] if dense else [0, 0, 0, 0, 0, 0, 1, -1]
    direction = rng.choice(choices, n).astype(np.int8)
    size = rng.uniform(0, 1, n) * (rng.uniform(0, 1, n) > 0.2)  # a fifth sized to zero
    frame = SignalFrame(
        direction=direction,
        size=size,
        stop_loss=None if sl is None else np.full(n, sl),
        take_profit=None if tp is None else np.full(n, tp),
        confidence=rng.uniform(0, 1, n),
        reason=[None if s > 0 else f"weak {i}" for i, s in enumerate(size)],
    )
    strategy = ArrayStrategy(frame)
    risk = RiskSettings(allow_shorts=shorts, position_size=position_size, max_position=max_position)
    with mock.patch("atb.engine.signal_rows._EAGER_SIGNALS", 0 if lazy else 50_000):
        fast, full = (
            run_backtest(bars, strategy, BacktestSettings(risk=risk, skip_idle_bars=skip))
            for skip in (True, False)
        )
    assert fast.result_hash == full.result_hash
    assert fast.steps <= full.steps == n
    np.testing.assert_array_equal(fast.equity, full.equity)
    np.testing.assert_array_equal(fast.balance, full.balance)
    assert [asdict(o) for o in fast.orders] == [asdict(o) for o in full.orders]
    assert list(fast.decisions) == list(full.decisions)
    assert len(fast.decisions) == int((direction != 0).sum())
    assert all(d.reason == "hold" for d in fast.decisions if d.direction == 2)
    fast_cols, full_cols = fast.decisions.columns(), full.decisions.columns()
    for name, values in full_cols.items():
        np.testing.assert_array_equal(np.asarray(fast_cols[name]), np.asarray(values))


def test_two_runs_one_hash(bundled: pd.DataFrame) -> None:
    def once() -> str:
        cfg = SmaCrossoverConfig(_target_="x", fast=10, slow=50, stop_loss=0.02)
        return run_backtest(
            bundled, SmaCrossover(cfg, RunContext()), BacktestSettings()
        ).result_hash

    assert once() == once()


def test_sma_crossover_fast_must_be_below_slow() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(run_config(strategy__fast=50, strategy__slow=20))
    assert "strategy.fast: must be < strategy.slow" in err.value.problems


def test_backtest_config_errors_name_dotted_keys() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(run_config(backtest__fee=-1, backtest__record={"enabled": "maybe"}))
    text = "\n".join(err.value.problems)
    assert "backtest.fee:" in text and "backtest.record.enabled:" in text


def test_run_is_recorded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "trades.csv"
    runner, result = run_graph(
        run_config(backtest__export_csv=str(out), backtest__summary=True),
        overrides=["strategy=sma_crossover"],
        config={"a": 1},
    )
    db, data = runner.nodes["db"], runner.nodes["data"]
    with db.session() as s:
        run = s.execute(select(Run)).scalar_one()
        counts = {
            m.__tablename__: s.scalar(select(func.count()).select_from(m))
            for m in (TradeRecord, OrderRecord, PositionRecord, DecisionRecordRow, AccountSnapshot)
        }
        curve = read_series(s.connection(), run.id, ACCOUNT)
    assert run.status == "finished" and run.error is None and run.finished_at is not None
    assert run.result_hash == result["result_hash"]
    assert run.data_fingerprint == data.fingerprint and run.bars == len(data.bars)
    assert run.overrides == ["strategy=sma_crossover"] and run.config == {"a": 1}
    assert run.parameters is not None and run.parameters["fast"] == 10
    assert run.metrics is not None and run.metrics["num_trades"] == counts["trades"] > 0
    # The per-bar curve is one compressed column per series, not a row per bar.
    assert counts["account_history"] == 0
    assert curve is not None and len(curve) == len(data.bars)
    assert (curve["time"] == data.bars.index).all()
    assert counts["positions"] == counts["trades"]
    assert counts["orders"] >= 2 * counts["trades"]
    assert run.code_version
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == counts["trades"] and rows[0]["side"] == "long"
    printed = capsys.readouterr().out
    assert "Sharpe ratio" in printed and "Buy & hold return" in printed


def test_same_config_and_data_same_hash() -> None:
    _, first = run_graph(run_config())
    _, second = run_graph(run_config())
    assert first["result_hash"] == second["result_hash"]


def test_failed_run_is_recorded_with_its_error() -> None:
    cfg = run_config(strategy={"_target_": "engine_helpers.BrokenStrategy", "name": "broken"})
    validated = validate_config(cfg)
    runner = Runner(validated, RunContext())
    with pytest.raises(NodeError, match="model exploded"):
        runner.run()
    with runner.nodes["db"].session() as s:
        run = s.execute(select(Run)).scalar_one()
    assert run.status == "failed" and "model exploded" in (run.error or "")


def test_scripted_trades_land_in_tables() -> None:
    ScriptedStrategy.script = {60: 1, 100: -1, 150: 1}
    cfg = run_config(
        strategy={"_target_": "engine_helpers.ScriptedStrategy", "name": "s"},
        backtest__allow_shorts=False,
    )
    runner, result = run_graph(cfg)
    with runner.nodes["db"].session() as s:
        trades = s.execute(select(TradeRecord).order_by(TradeRecord.trade_no)).scalars().all()
        positions = s.execute(select(PositionRecord)).scalars().all()
    assert [t.exit_reason for t in trades] == ["signal", "end_of_data"]
    assert all(p.status == "closed" for p in positions)
    bars = runner.nodes["data"].bars
    assert trades[0].entry_time.replace(tzinfo=None) == bars.index[61].to_pydatetime().replace(
        tzinfo=None
    )
    assert result["metrics"]["num_trades"] == 2


def test_open_position_recorded_as_open_when_not_closed_at_end() -> None:
    ScriptedStrategy.script = {60: 1}
    cfg = run_config(
        strategy={"_target_": "engine_helpers.ScriptedStrategy", "name": "s"},
        backtest__close_at_end=False,
    )
    runner, result = run_graph(cfg)
    with runner.nodes["db"].session() as s:
        (pos,) = s.execute(select(PositionRecord)).scalars().all()
    assert pos.status == "open" and pos.unrealized_pnl is not None
    assert result["metrics"]["num_trades"] == 0
    # Account rows say how much of the equity the position is: |qty| × close / equity.
    bars = runner.nodes["data"].bars
    with runner.nodes["db"].session() as s:
        account = _account_rows(s)
    flat, held = account[60], account[-1]
    assert (flat.open_positions, flat.exposure) == (0, 0.0)
    assert held.open_positions == 1 and held.position_qty == pytest.approx(pos.qty)
    close = float(bars["close"].iloc[-1])
    assert held.exposure == pytest.approx(pos.qty * close / held.equity, rel=1e-12)
    assert 0.9 < held.exposure < 1.01  # sized near the whole balance


def _rows(session: Any, series: str) -> list[Any]:
    """A backtest's stored series as row-like objects (attribute per column)."""
    run_id = session.execute(select(Run.id)).scalar_one()
    frame = read_series(session.connection(), run_id, series)
    assert frame is not None
    frame["mode"] = "backtest"
    return [SimpleNamespace(**row) for row in frame.to_dict("records")]


def _account_rows(session: Any) -> list[Any]:
    rows = _rows(session, ACCOUNT)
    for row in rows:
        row.open_positions = int(row.open_positions)
    return rows


def _prediction_rows(session: Any) -> list[Any]:
    rows = _rows(session, PREDICTIONS)
    for row in rows:
        row.time = row.time.to_pydatetime()
        row.confidence = None if row.confidence != row.confidence else row.confidence
        row.direction = None if row.direction != row.direction else int(row.direction)
    return rows


def test_predictions_and_account_history_round_trip() -> None:
    cfg = run_config(strategy={"_target_": "engine_helpers.PredictingStrategy", "name": "p"})
    runner, _ = run_graph(cfg)
    bars = runner.nodes["data"].bars
    with runner.nodes["db"].session() as s:
        preds = _prediction_rows(s)
        account = _account_rows(s)
        assert s.scalar(select(func.count()).select_from(PredictionRecord)) == 0
    assert len(preds) == len(account) == len(bars)
    first, second = preds[0], preds[1]
    assert first.time.replace(tzinfo=None) == bars.index[0].to_pydatetime().replace(tzinfo=None)
    assert first.confidence is None and second.confidence is not None
    assert second.predicted_price == pytest.approx(bars["close"].iloc[1] * 1.01)
    assert (second.direction, second.model_id, second.mode) == (1, "m1", "backtest")
    last = account[-1]
    assert last.time.replace(tzinfo=None) == bars.index[-1].to_pydatetime().replace(tzinfo=None)
    assert last.equity == last.balance == 10_000.0 and last.drawdown == 0.0
    assert (last.open_positions, last.exposure) == (0, 0.0)
