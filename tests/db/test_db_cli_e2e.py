"""`atb db upgrade|current`, `atb tests heartbeat` and start-up errors, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from atb_testkit.pgtemp import free_port
from db_helpers import make_db
from sqlalchemy import text

from atb.db.migrate import head_revision, upgrade

pytestmark = pytest.mark.e2e


def atb(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:  # fmt: skip
    full_env = {**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "atb.cli", *args],
        capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout,
    )  # fmt: skip


def test_heartbeat_round_trip(db_url: str) -> None:
    done = atb("tests", "heartbeat", "--db-url", db_url, env={"HEARTBEAT_COMPONENT": "probe-7"})
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.startswith("✅ Heartbeat recorded")
    assert "round trip" in done.stdout and "ms" in done.stdout
    db = make_db(db_url)
    with db.engine.connect() as conn:
        row = conn.execute(text("SELECT event_type, message, component FROM system_events")).one()
    db.stop()
    assert tuple(row) == ("TEST", "Heartbeat", "probe-7")


def test_heartbeat_default_component_and_configured_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from atb.db.cli import command

    url = f"sqlite:///{tmp_path / 'configured.db'}"
    monkeypatch.setenv("ATB_DB_URL", url)  # read by conf/db/sqlite.yaml
    monkeypatch.delenv("HEARTBEAT_COMPONENT", raising=False)
    assert command("tests", ["heartbeat"]) == 0
    out = capsys.readouterr().out
    assert "component=scheduler" in out and "configured.db" in out


def test_heartbeat_reports_an_unreachable_database() -> None:
    url = f"postgresql+psycopg://atb:hunter2@127.0.0.1:{free_port()}/atb"
    done = atb("tests", "heartbeat", "--db-url", url)
    assert done.returncode == 1
    assert done.stdout.startswith("❌ Heartbeat failed: cannot connect to database")
    assert "hunter2" not in done.stdout + done.stderr and "atb:***@" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_db_upgrade_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    up = atb("db", "upgrade", "--db-url", url)
    assert up.returncode == 0, up.stderr
    assert f"upgraded empty database -> {head_revision()}" in up.stdout


def test_db_current_and_upgrade(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The same commands in-process (an interpreter start costs seconds on a busy box)."""
    from atb.db.cli import command

    db = make_db(db_url)
    upgrade(db.engine, "0001_system_events")
    db.stop()
    assert command("db", ["current", "--db-url", db_url]) == 0
    out = capsys.readouterr().out
    assert "0001_system_events" in out and "run `atb db upgrade`" in out
    assert command("db", ["upgrade", "--db-url", db_url]) == 0
    assert f"0001_system_events -> {head_revision()}" in capsys.readouterr().out
    assert command("db", ["current", "--db-url", db_url]) == 0
    assert f"{head_revision()} (head)" in capsys.readouterr().out
    assert command("db", ["upgrade", "--db-url", db_url]) == 0
    assert "already at" in capsys.readouterr().out


def test_run_against_an_old_database_says_upgrade(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = make_db(url)
    upgrade(db.engine, "0001_system_events")
    db.stop()
    done = subprocess.run(
        [sys.executable, "-m", "atb", f"db.url={url}", "runner.write_outputs=false"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "ATB_OUTPUT_DIR": str(tmp_path / "out")},
    )  # fmt: skip
    assert done.returncode == 1
    assert "at revision 0001_system_events" in done.stderr
    assert "run `atb db upgrade`" in done.stderr
    assert "Traceback" not in done.stderr


def test_run_against_an_unreachable_server_masks_the_password(tmp_path: Path) -> None:
    port = free_port()
    done = subprocess.run(
        [sys.executable, "-m", "atb", "db=postgres",
         f"db.url=postgresql+psycopg://trader:hunter2@127.0.0.1:{port}/atb",
         "db.connect_timeout=2", "runner.write_outputs=false"],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "ATB_OUTPUT_DIR": str(tmp_path / "out")},
    )  # fmt: skip
    assert done.returncode == 1
    assert f"cannot connect to database postgresql+psycopg://trader:***@127.0.0.1:{port}/atb" in (
        done.stderr
    )
    assert "hunter2" not in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


def test_db_replay_loads_a_left_over_spill_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A PostgreSQL run's spill file sits in its own output dir: `atb db replay` loads it."""
    from db_helpers import event_counts, record

    from atb.db.cli import command
    from atb.db.journal import RowBuilder, row_to_json

    url = f"sqlite:///{tmp_path / 'replay.db'}"
    spill = tmp_path / "outputs" / "journal-spill.jsonl"
    spill.parent.mkdir()
    build = RowBuilder("old-run", ts_text=True)
    spill.write_text("".join(row_to_json(build(record(i))) + "\n" for i in range(50)))
    args = ["replay", "--db-url", url, "--spill-file", str(spill)]
    assert command("db", args) == 0
    assert "replayed 50 of 50" in capsys.readouterr().out
    assert command("db", args) == 0  # nothing left: idempotent
    db = make_db(url)
    assert event_counts(db) == (50, 50)
    db.stop()
    assert not spill.exists()
