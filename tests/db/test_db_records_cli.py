"""`atb db records`: a paper/live record log left behind is applied without starting a
session, exactly once, on SQLite and PostgreSQL; bad input gets one line and exit 1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from db_helpers import insert_run
from sqlalchemy import text

from atb.db.cli import command
from atb.db.record_ops import encode_op, log_path
from atb.engine.record_log import RecordLog

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _bar(run_id: str, i: int) -> dict[str, Any]:
    order = {"run_id": run_id, "mode": "paper", "order_no": i, "symbol": "BTCUSDT",
             "created_at": T0, "side": "buy", "kind": "entry", "order_type": "market",
             "reason": "signal", "status": "filled", "size": 1.0, "filled_at": T0,
             "qty": 0.1, "price": 100.0 + i, "fee": 0.01, "position_no": None,
             "exchange_order_id": None, "note": None, "error_code": None}  # fmt: skip
    account = {"run_id": run_id, "mode": "paper", "time": T0 + timedelta(hours=i),
               "balance": 1.0, "equity": 1.0, "drawdown": 0.0, "position_qty": 0.0,
               "open_positions": 0, "exposure": 0.0}  # fmt: skip
    return {"orders": [order], "account": [account], "metrics": {"bars": i}}


def _leftover(directory: Path, run_id: str, bars: int) -> Path:
    """What a killed session leaves: complete ops, then a line torn mid-write."""
    directory.mkdir(parents=True, exist_ok=True)
    path = log_path(directory, run_id)
    with path.open("wb") as fh:
        for i in range(1, bars + 1):
            fh.write(encode_op({"seq": i, "run_id": run_id, **_bar(run_id, i)}))
        fh.write(encode_op({"seq": bars + 1, "run_id": run_id, **_bar(run_id, bars + 1)})[:50])
    return path


def _counts(db: Any, run_id: str) -> tuple[int, int, int]:
    with db.engine.connect() as conn:
        orders = conn.execute(text(f"select count(*) from orders where run_id='{run_id}'"))
        account = conn.execute(
            text(f"select count(*) from account_history where run_id='{run_id}'")
        )
        metrics = conn.execute(text(f"select metrics from runs where id='{run_id}'")).scalar()
    seq = metrics["records_seq"] if isinstance(metrics, dict) else None
    if isinstance(metrics, str):
        import json

        seq = json.loads(metrics)["records_seq"]
    return int(orders.scalar_one()), int(account.scalar_one()), int(seq)


def test_a_left_over_log_is_applied_once(
    database: Any, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    insert_run(database, "dead")
    path = _leftover(tmp_path / "logs", "dead", 3)
    copy = tmp_path / "copy" / path.name
    copy.parent.mkdir()
    shutil.copy(path, copy)
    assert command("db", ["records", "--db-url", db_url, "--file", str(path)]) == 0
    out = capsys.readouterr().out
    assert "applied 3 of 3 op(s) of run dead from" in out and str(path) in out
    assert not path.exists()
    assert _counts(database, "dead") == (3, 3, 3)
    # The same log again (a copy an operator kept): every op is already there.
    assert command("db", ["records", "--db-url", db_url, "--dir", str(copy.parent)]) == 0
    out = capsys.readouterr().out
    assert "applied 0 of 3 op(s) of run dead" in out and "(3 already stored)" in out
    assert _counts(database, "dead") == (3, 3, 3)


def test_a_running_sessions_log_is_left_to_it(
    database: Any, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    insert_run(database, "live")
    log = RecordLog(database.engine, log_path(tmp_path, "live"), "live")
    log.open()
    try:
        code = command("db", ["records", "--db-url", db_url, "--file", str(log.path)])
        err = capsys.readouterr().err
        assert code == 1
        assert err.strip().endswith("in use by a running session, which writes these records")
        assert len(err.strip().splitlines()) == 1
    finally:
        log.close(5)


def test_bad_input_is_one_line_and_the_file_is_kept(
    database: Any, db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "records-x.jsonl"
    garbage.write_bytes(b"PK\x03\x04 not a record log\n")
    unknown = _leftover(tmp_path / "other", "not-here", 2)
    cases = [
        (["--file", str(tmp_path / "missing.jsonl")], "missing.jsonl: no such file"),
        (["--dir", str(tmp_path / "nowhere")], "nowhere: no such directory"),
        (["--file", str(garbage)], "line 1 is not a record-log op"),
        (["--file", str(unknown)], "run not-here is not in this database"),
    ]
    for args, message in cases:
        assert command("db", ["records", "--db-url", db_url, *args]) == 1, args
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
        assert "Traceback" not in err
    assert garbage.exists() and unknown.exists()


def test_no_logs_is_not_an_error(
    db_url: str, database: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert command("db", ["records", "--db-url", db_url, "--dir", str(empty)]) == 0
    assert "no record logs in" in capsys.readouterr().out


@pytest.mark.e2e
def test_atb_db_records_as_a_user_runs_it(tmp_path: Path) -> None:
    """The default directory is the one a paper session on this database uses."""
    from db_helpers import make_db

    from atb.db.url import default_record_log_dir, parse_url

    url = f"sqlite:///{tmp_path / 'atb.db'}"
    db = make_db(url)
    db.start()
    insert_run(db, "killed")
    directory = default_record_log_dir(parse_url(url))
    _leftover(directory, "killed", 4)
    done = subprocess.run(
        [sys.executable, "-m", "atb.cli", "db", "records", "--db-url", url],
        capture_output=True, text=True, timeout=120, env={**os.environ},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "applied 4 of 4 op(s) of run killed" in done.stdout
    assert _counts(db, "killed") == (4, 4, 4)
    db.stop()
