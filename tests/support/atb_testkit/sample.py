"""A deterministic sample database for tests, benchmarks and trying the dashboards out.

`seed(url)` writes a paper session (running, one open position), a finished live session,
backtest runs (two of them a sweep over `fast`) with predictions, and system events; the
figures are chosen so tests can assert exact KPI values. `scale` sizes the paper session
for the benchmark (100 000 trades, 1 000 000 events) through atb.db.bulk.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import Engine, create_engine, insert

from atb.dashboards import tables as t
from atb.db.bulk import insert_dicts
from atb.db.migrate import upgrade
from atb.db.models.heartbeats import RunHeartbeat

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
INITIAL = 10_000.0

PAPER = "paper-session-0001"
LIVE = "live-session-0001"
BACKTEST_A = "backtest-run-000a"
BACKTEST_B = "backtest-run-000b"
SWEEP = "multirun/2024-01-01/00-00-00"


@dataclass(frozen=True)
class Expected:
    """Values a seeded database shows on the dashboards (for assertions)."""

    paper_balance: float
    paper_equity: float
    paper_trades: int
    paper_wins: int
    paper_max_drawdown: float
    live_balance: float


def _run(run_id: str, mode: str, **extra: Any) -> dict[str, Any]:
    base = {
        "id": run_id,
        "mode": mode,
        "strategy": "ml_basic",
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "status": "finished",
        "started_at": T0,
        "finished_at": None,
        "config": {"mode": mode},
        "overrides": [],
        "parameters": {},
        "data_fingerprint": None,
        "data_source": None,
        "data_start": T0,
        "data_end": None,
        "bars": None,
        "code_version": "test",
        "sweep_id": None,
        "job_num": None,
        "metrics": None,
        "result_hash": None,
        "error": None,
    }
    base.update(extra)
    return base


def account_rows(
    run_id: str, mode: str, equity: np.ndarray, balance: np.ndarray
) -> list[dict[str, Any]]:
    peak = np.maximum.accumulate(equity)
    dd = 1.0 - equity / peak
    return [
        {
            "run_id": run_id,
            "mode": mode,
            "time": T0 + i * HOUR,
            "balance": float(balance[i]),
            "equity": float(equity[i]),
            "drawdown": float(dd[i]),
            "position_qty": 0.0,
            "open_positions": 0,
            "exposure": 0.0,
        }
        for i in range(len(equity))
    ]


def trade_rows(run_id: str, mode: str, pnl: np.ndarray, start_no: int = 1) -> list[dict[str, Any]]:
    rows = []
    for i, p in enumerate(pnl):
        entry = 40_000.0 + (i % 500)
        qty = 0.01
        exit_price = entry + float(p) / qty
        rows.append(
            {
                "run_id": run_id,
                "mode": mode,
                "trade_no": start_no + i,
                "position_no": start_no + i,
                "symbol": "BTCUSDT",
                "side": "long" if i % 3 else "short",
                "qty": qty,
                "entry_time": T0 + (2 * i) * HOUR,
                "entry_price": entry,
                "exit_time": T0 + (2 * i + 1) * HOUR,
                "exit_price": exit_price,
                "fees": 0.1,
                "pnl": float(p),
                "return_pct": float(p) / (entry * qty),
                "exit_reason": "signal",
                "bars_held": 1,
            }
        )
    return rows


def event_rows(session_id: str | None, n: int, start: datetime) -> Iterator[dict[str, Any]]:
    severities = ("INFO", "INFO", "INFO", "WARNING", "ERROR", "DEBUG", "INFO", "CRITICAL")
    types = ("ENGINE", "ORDER", "DATA", "RISK", "ALERT")
    for i in range(n):
        sev = severities[i % len(severities)]
        yield {
            "event_uuid": uuid.UUID(int=(hash(session_id) & 0xFFFFFFFF) << 64 | i).hex,
            "timestamp": start + timedelta(seconds=i),
            "event_type": types[i % len(types)],
            "severity": sev,
            "message": f"event {i} of {session_id}",
            "name": f"evt_{i % 7}",
            "logger": "atb",
            "details": None,
            "context": None,
            "component": "engine",
            "strategy": "ml_basic",
            "symbol": "BTCUSDT",
            "error_code": None,
            "stack_trace": None,
            "alert_sent": sev == "CRITICAL",
            "alert_method": None,
            "session_id": session_id,
        }


def seed(
    url: str, scale_trades: int = 40, scale_events: int = 64, predictions: int = 300
) -> Expected:
    engine = create_engine(url)
    try:
        # Migrated like a run's database (not create_all), so `Database.start()` accepts
        # it: a dashboard or an atb run can be pointed at the demo database.
        upgrade(engine)
        return _seed(engine, scale_trades, scale_events, predictions)
    finally:
        engine.dispose()


def _seed(engine: Engine, n_trades: int, n_events: int, n_pred: int) -> Expected:
    rng = np.random.default_rng(7)
    now = datetime.now(UTC)
    # Paper: alternating +30 / -10 trades, so win rate is exactly 50 %.
    paper_pnl = np.where(np.arange(n_trades) % 2 == 0, 30.0, -10.0)
    n_bars = max(48, min(n_trades, 100_000))
    steps = np.full(n_bars, paper_pnl.sum() / n_bars)
    steps[n_bars // 3] -= 150.0  # one dip, so max drawdown > 0
    steps[n_bars // 3 + 1] += 150.0
    paper_balance = INITIAL + np.cumsum(steps)
    paper_equity = paper_balance.copy()
    paper_equity[-1] += 12.5  # the open position's unrealised PnL
    live_pnl = np.array([50.0, -20.0, 70.0])
    live_equity = INITIAL + np.cumsum(np.r_[np.zeros(45), live_pnl])
    with engine.begin() as conn:
        conn.execute(
            insert(t.runs),
            [
                _run(PAPER, "paper", status="running", started_at=now - timedelta(hours=1)),
                _run(LIVE, "live", started_at=now - timedelta(days=2)),
                _run(
                    BACKTEST_A,
                    "backtest",
                    parameters={"fast": 5, "slow": 50},
                    strategy="sma_crossover",
                    sweep_id=SWEEP,
                    job_num=0,
                    metrics=_metrics(0.12, 1.4, 0.08, 0.55, 20),
                    data_end=T0 + 99 * HOUR,
                    bars=100,
                ),
                _run(
                    BACKTEST_B,
                    "backtest",
                    parameters={"fast": 10, "slow": 50},
                    strategy="sma_crossover",
                    sweep_id=SWEEP,
                    job_num=1,
                    metrics=_metrics(0.05, 0.7, 0.11, 0.48, 25),
                    data_end=T0 + 99 * HOUR,
                    bars=100,
                    started_at=T0 + HOUR,
                ),
            ],
        )
        insert_dicts(conn, t.trades, iter(trade_rows(PAPER, "paper", paper_pnl)))
        insert_dicts(
            conn, t.account, iter(account_rows(PAPER, "paper", paper_equity, paper_balance))
        )
        conn.execute(
            insert(t.positions),
            [
                {
                    "run_id": PAPER,
                    "mode": "paper",
                    "position_no": n_trades + 1,
                    "symbol": "BTCUSDT",
                    "side": "long",
                    "qty": 0.5,
                    "entry_time": T0 + (2 * n_trades) * HOUR,
                    "entry_price": 42_000.0,
                    "stop_loss": 41_000.0,
                    "take_profit": 44_000.0,
                    "status": "open",
                    "closed_at": None,
                    "exit_price": None,
                    "realized_pnl": None,
                    "last_price": 42_025.0,
                    "unrealized_pnl": 12.5,
                }
            ],
        )
        conn.execute(insert(t.trades), trade_rows(LIVE, "live", live_pnl))
        conn.execute(insert(t.account), account_rows(LIVE, "live", live_equity, live_equity))
        for run_id, drift in ((BACKTEST_A, 2.0), (BACKTEST_B, 0.8)):
            equity = INITIAL + np.cumsum(rng.normal(drift, 20.0, 100))
            conn.execute(insert(t.account), account_rows(run_id, "backtest", equity, equity))
            conn.execute(insert(t.trades), trade_rows(run_id, "backtest", rng.normal(5, 20, 12)))
        conn.execute(insert(t.predictions), prediction_rows(BACKTEST_A, "backtest", n_pred, rng))
        # The running paper session's loop is alive: it beat just now (interval 10 min, so
        # the seed stays "running" for the 30 min a test module may take).
        conn.execute(
            insert(RunHeartbeat.__table__),  # type: ignore[arg-type]
            [{"run_id": PAPER, "pulse_at": now, "beat_at": now,
              "started_at": now - timedelta(hours=1), "interval_seconds": 600.0,
              "extra_wait_seconds": 0.0, "iterations": n_bars, "failures": 0, "pid": 1,
              "written_at": now}],
        )  # fmt: skip
        start = now - timedelta(seconds=n_events + 5)
        insert_dicts(conn, t.events, event_rows(PAPER, n_events, start))
        conn.execute(insert(t.events), list(event_rows(LIVE, 5, now - timedelta(days=1))))
    return Expected(
        paper_balance=float(paper_balance[-1]),
        paper_equity=float(paper_equity[-1]),
        paper_trades=n_trades,
        paper_wins=int((paper_pnl > 0).sum()),
        paper_max_drawdown=float(np.max(1.0 - paper_equity / np.maximum.accumulate(paper_equity))),
        live_balance=float(live_equity[-1]),
    )


def _metrics(total: float, sharpe: float, dd: float, win: float, n: int) -> dict[str, Any]:
    return {
        "total_return": total,
        "sharpe": sharpe,
        "max_drawdown": dd,
        "win_rate": win,
        "num_trades": n,
        "final_equity": INITIAL * (1 + total),
        "initial_balance": INITIAL,
    }


def prediction_rows(
    run_id: str, mode: str, n: int, rng: np.random.Generator
) -> list[dict[str, Any]]:
    from atb.dashboards.market_prediction.model import find_metadata

    meta = find_metadata(None) or {}
    model_id = str(meta.get("model_id") or "sample-model")
    close = 40_000.0 * np.exp(np.cumsum(rng.normal(0, 0.004, n + 1)))
    # A model that is right about direction ~60 % of the time.
    true_r = close[1:] / close[:-1] - 1.0
    noise = rng.normal(0, 0.004, n)
    r = np.where(rng.random(n) < 0.6, true_r, -true_r) * 0.5 + noise * 0.1
    return [
        {
            "run_id": run_id,
            "mode": mode,
            "time": T0 + i * HOUR,
            "predicted_price": float(close[i] * (1 + r[i])),
            "r": float(r[i]),
            "confidence": float(min(1.0, abs(r[i]) * 200)),
            "direction": int(np.sign(r[i])),
            "model_id": model_id,
        }
        for i in range(n)
    ]


def add_trade(url: str, run_id: str = PAPER, mode: str = "paper", pnl: float = 99.0) -> int:
    """Write one more closed trade (what the engine does), returning its id."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            row = trade_rows(run_id, mode, np.array([pnl]), start_no=900_000)[0]
            result = conn.execute(insert(t.trades).returning(t.trades.c.id), [row])
            return int(result.scalar_one())
    finally:
        engine.dispose()
