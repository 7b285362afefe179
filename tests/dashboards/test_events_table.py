"""The monitoring events table shows each event's own fields and hides DECISION rows by
default (issue 15: flooded with DECISION rows reading "decision", Component always blank)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from atb.dashboards.monitoring.events import details_text
from atb.dashboards.monitoring.model import MonitoringModel
from atb.dashboards.readonly import dispose_all, readonly_engine


@pytest.mark.e2e  # runs the CLI in a subprocess
def test_events_table_fields_and_decisions(tmp_path: Path) -> None:
    env = {**os.environ, "ATB_OUTPUT_DIR": str(tmp_path / "outputs")}
    proc = subprocess.run(
        [sys.executable, "-m", "atb", "mode=paper", "exchange=replay", "exchange.step=true",
         "health=off", "alerts=off", "strategy=sma_crossover", "strategy.fast=2",
         "strategy.slow=3", "live.check_interval=0.01", "live.max_iterations=40",
         f"db.url=sqlite:///{tmp_path / 'atb.db'}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    engine = readonly_engine(f"sqlite:///{tmp_path / 'atb.db'}")
    try:
        with engine.connect() as conn:
            (run_id,) = conn.exec_driver_sql("SELECT id FROM runs").one()
        model = MonitoringModel(engine, run_id, event_rows=500)
        events = model.load().events
        assert len(events) and "DECISION" not in set(events["event_type"])
        assert (events["component"] != "").all()
        orders = events[events["name"] == "order_filled"]
        assert len(orders)
        text = orders["details_text"].iloc[0]
        assert "qty=" in text and "price=" in text and "fee=" in text and "reason=" in text
        trades = events[events["name"] == "close_position"]
        assert len(trades) and "pnl=" in trades["details_text"].iloc[0]
        everything = model.set_hidden_types(frozenset())
        assert "DECISION" in set(everything["event_type"])
    finally:
        dispose_all()


def test_details_text_orders_the_fields_that_matter() -> None:
    text = details_text('{"note": "n", "qty": 0.5, "price": 42000.0, "fee": 4.2, "x": {"a": 1}}')
    assert text == "qty=0.5 price=42,000.00 fee=4.2 note=n"
