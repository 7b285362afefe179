"""A SQLite file's integrity check reads all of it: a sweep runs it once, not once per job."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from atb.db import startup
from atb.runtime.sweep_store import open_database


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files `PRAGMA quick_check` ran on, in this process."""
    ran: list[str] = []
    connect = sqlite3.connect

    def traced(database: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = connect(database, *args, **kwargs)
        conn.set_trace_callback(
            lambda sql: ran.append(database) if "quick_check" in sql.lower() else None
        )
        return conn

    monkeypatch.setattr(startup.sqlite3, "connect", traced)
    monkeypatch.setattr(startup, "_checked", set())
    monkeypatch.setattr(startup, "_checked_new", set())
    return ran


def test_a_sweep_checks_its_database_once(tmp_path: Path, checks: list[str]) -> None:
    db = tmp_path / "sweep.db"
    open_database(f"sqlite:///{db}").stop()  # the launcher: a new file, created here
    for _job in range(3):  # the jobs, then the summary, reopen the grown file
        database = open_database(f"sqlite:///{db}")
        with database.engine.begin() as conn:
            conn.exec_driver_sql("create table if not exists grow (x blob)")
            conn.exec_driver_sql("insert into grow values (zeroblob(200000))")
        database.stop()
    assert checks == []  # created by this process: nothing to find


def test_an_existing_file_is_checked_once_per_process(tmp_path: Path, checks: list[str]) -> None:
    db = tmp_path / "old.db"
    open_database(f"sqlite:///{db}").stop()
    startup._checked.clear()  # as a new process finds it
    startup._checked_new.clear()
    for _ in range(3):
        open_database(f"sqlite:///{db}").stop()
    assert len(checks) == 1


def test_each_file_is_checked_on_its_own(tmp_path: Path, checks: list[str]) -> None:
    for name in ("a.db", "b.db"):
        open_database(f"sqlite:///{tmp_path / name}").stop()
    startup._checked.clear()
    startup._checked_new.clear()
    for name in ("a.db", "b.db", "a.db"):
        open_database(f"sqlite:///{tmp_path / name}").stop()
    assert len(checks) == 2 and checks[0] != checks[1]


def test_a_file_replaced_at_the_same_path_is_checked_again(
    tmp_path: Path, checks: list[str]
) -> None:
    db = tmp_path / "atb.db"
    open_database(f"sqlite:///{db}").stop()
    open_database(f"sqlite:///{db}").stop()
    restored = tmp_path / "backup.db"
    restored.write_bytes(db.read_bytes())
    restored.replace(db)  # a backup restored over it: another inode
    open_database(f"sqlite:///{db}").stop()
    assert len(checks) == 1
