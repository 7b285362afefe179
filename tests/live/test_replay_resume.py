"""Re-running `python -m atb mode=paper exchange=replay` resumes where the session left off in
the feed (issue 15: it used to restart the replay at 2024-01-01 and loop 543 times on bars=0,
silently)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.e2e  # runs the CLI in a subprocess

ARGS = (
    "mode=paper", "exchange=replay", "exchange.step=true", "health=off", "alerts=off",
    "live.check_interval=0.01", "live.max_iterations=6",
)  # fmt: skip


def run(tmp: Path, *extra: str) -> dict[str, Any]:
    env = {**os.environ, "ATB_OUTPUT_DIR": str(tmp / "outputs")}
    proc = subprocess.run(
        [sys.executable, "-m", "atb", *ARGS, f"db.url=sqlite:///{tmp / 'atb.db'}", *extra],
        capture_output=True, text=True, timeout=300, cwd=tmp, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with sqlite3.connect(tmp / "atb.db") as conn:
        rid, metrics = conn.execute(
            "SELECT id, metrics FROM runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
        events = [
            r[0]
            for r in conn.execute("SELECT name FROM system_events WHERE session_id = ?", (rid,))
        ]
    return {"id": rid, "metrics": json.loads(metrics), "events": events}


def test_rerun_resumes_where_the_feed_left_off(tmp_path: Path) -> None:
    first = run(tmp_path)
    assert first["metrics"]["bars"] >= 5
    last_bar = first["metrics"]["state"]["last_bar"]
    second = run(tmp_path)
    assert second["metrics"]["resumed_from"] == first["id"]
    assert "replay_resumed" in second["events"]
    assert second["metrics"]["bars"] >= 5, second["metrics"]  # not bars=0 on every poll
    assert second["metrics"]["state"]["last_bar"] > last_bar
    # A fresh session on request starts the replay from its configured start again.
    fresh = run(tmp_path, "live.resume=false")
    assert fresh["metrics"]["resumed_from"] is None
    assert fresh["metrics"]["state"]["last_bar"] < second["metrics"]["state"]["last_bar"]
