"""SystemEvent types STRATEGY_CHANGE, MODEL_UPDATE and BALANCE_ADJUSTMENT are emitted where
they happen (issue 15: defined and never emitted): a resumed session with changed strategy
parameters, the model a run loads, the balance reconciled against the exchange."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e  # runs the CLI in a subprocess

ARGS = (
    "mode=paper", "exchange=replay", "exchange.step=true", "health=off", "alerts=off",
    "live.check_interval=0.01", "live.max_iterations=3",
)  # fmt: skip


def run(tmp: Path, *extra: str) -> None:
    env = {**os.environ, "ATB_OUTPUT_DIR": str(tmp / "outputs")}
    proc = subprocess.run(
        [sys.executable, "-m", "atb", *ARGS, f"db.url=sqlite:///{tmp / 'atb.db'}", *extra],
        capture_output=True, text=True, timeout=300, cwd=tmp, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


def event_types(tmp: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(tmp / "atb.db") as conn:
        return conn.execute("SELECT event_type, name FROM system_events ORDER BY id").fetchall()


def test_model_update_and_strategy_change(tmp_path: Path) -> None:
    run(tmp_path)  # ml_basic: the model it loads is a MODEL_UPDATE
    assert ("MODEL_UPDATE", "model_loaded") in event_types(tmp_path)
    run(tmp_path, "strategy.min_confidence=0.45")  # resumed with a changed parameter
    changes = [e for e in event_types(tmp_path) if e[0] == "STRATEGY_CHANGE"]
    assert changes == [("STRATEGY_CHANGE", "strategy_change")]
    run(tmp_path, "strategy.min_confidence=0.45")  # same parameters: nothing to report
    assert len([e for e in event_types(tmp_path) if e[0] == "STRATEGY_CHANGE"]) == 1


def test_balance_adjustment_when_the_exchange_holds_less(tmp_path: Path) -> None:
    import json

    from atb_testkit import FakeBinance
    from live_helpers import QUICK, SMA, Session, prepare_db, zigzag_candles

    session = Session(tmp_path, tmp_path / "atb.db", prepare_db(tmp_path / "atb.db"))
    with FakeBinance(
        candles=zigzag_candles(), warmup=40, balances={"USDT": 2_500.0, "BTC": 0.0}
    ) as fake:
        proc = session.run(
            "mode=live", "live.i_understand_the_risks=true", *SMA, *QUICK,
            f"exchange.base_url={fake.url}", "live.max_iterations=2",
            env={"BINANCE_API_KEY": fake.api_key, "BINANCE_API_SECRET": fake.api_secret},
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = session.query(
        "select event_type, details from system_events where name = 'balance_adjustment'"
    )
    assert [r[0] for r in rows] == ["BALANCE_ADJUSTMENT"]
    details = json.loads(rows[0][1])
    assert details["exchange_free"] == 2_500.0 and details["configured"] == 10_000.0
