"""A log sink that cannot write (a full disk: /dev/full) becomes a journalled event and fires
the default `log_sink_failed` alert rule; before, it was one console line and nothing else.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_full_disk_file_sink_is_journalled_and_alerts(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATB_DB", "PORT", "ALERT_"))}
    env["ATB_OUTPUT_DIR"] = str(tmp_path / "outputs")
    proc = subprocess.run(
        [
            sys.executable, "-m", "atb", "mode=paper", "exchange=replay", "health=off",
            "strategy=sma_crossover", "live.max_iterations=70", "live.check_interval=0.1",
            "logging.sinks=[{kind: console, level: ERROR}, {kind: file, path: /dev/full}]",
            f"db.url=sqlite:///{tmp_path / 'atb.db'}",
        ],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]  # a dead sink never stops trading
    with sqlite3.connect(tmp_path / "atb.db") as conn:
        failed = conn.execute(
            "select severity, details from system_events where name = 'log_sink_failed'"
        ).fetchall()
        alerts = conn.execute(
            "select message from system_events where event_type = 'ALERT' "
            "and name = 'alert_firing' and message like '%log_sink_failed%' "
            # A run long enough to reach the sink's retry re-announces the failure; the rule
            # records that repeat as a suppressed duplicate, not a second notification.
            "and coalesce(error_code, '') != 'suppressed_duplicate'"
        ).fetchall()
    assert failed and all(sev == "ERROR" for sev, _ in failed)
    assert "No space left on device" in failed[0][1]
    assert len(alerts) == 1, alerts
    assert "FileSink" in alerts[0][0]
