"""Issue 14, bad input: one clear line saying what and where, a non-zero exit, no
traceback, and the user's database and files untouched. Real commands, real files."""

from __future__ import annotations

import hashlib
import lzma
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SMA = ["strategy=sma_crossover", "health=off", "alerts=off"]


def atb(
    tmp: Path, *args: str, env: dict[str, str] | None = None, module: str = "atb"
) -> subprocess.CompletedProcess[str]:
    """`python -m atb ...` (module="atb.cli": the `atb` console script)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("ATB_", "BINANCE_"))}
    full.update({"ATB_OUTPUT_DIR": str(tmp / "outputs"), **(env or {})})
    cmd = [sys.executable, "-m", module, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=full, cwd=tmp)


def atb_cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return atb(tmp, *args, module="atb.cli")


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_unwritable_output_dir_is_one_line_exit_1(tmp_path: Path) -> None:
    proc = atb(tmp_path, *SMA, f"db.url=sqlite:///{tmp_path / 'a.db'}",
               env={"ATB_OUTPUT_DIR": "/proc/atb"})  # fmt: skip
    assert proc.returncode == 1
    line = one_line(proc)
    assert line.startswith("atb: error: cannot write /proc/atb") and "ATB_OUTPUT_DIR" in line


def _foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("create table customers (id integer primary key, name text)")
        conn.execute("create table invoices (id integer primary key, total real)")
        conn.executemany("insert into customers values (?, ?)", [(1, "ada"), (2, "bob")])
    conn.close()


def _journal_mode(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        mode = str(conn.execute("pragma journal_mode").fetchone()[0])
    conn.close()
    return mode


def test_foreign_sqlite_database_is_refused_untouched_until_adopted(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    _foreign_sqlite(db)
    before = digest(db)
    run = atb(tmp_path, *SMA, f"db.url=sqlite:///{db}")
    assert run.returncode == 1
    line = one_line(run)
    assert "other.db" in line and "another application's tables (customers, invoices)" in line
    assert "atb db upgrade --adopt" in line
    upgrade = atb_cli(tmp_path, "db", "upgrade", "--db-url", f"sqlite:///{db}")
    assert upgrade.returncode == 1 and "--adopt" in upgrade.stderr
    # refused twice: not one byte changed, still in its own journal mode, no -wal file
    assert digest(db) == before and _journal_mode(db) == "delete"
    assert not (tmp_path / "other.db-wal").exists()

    adopt = atb_cli(tmp_path, "db", "upgrade", "--adopt", "--db-url", f"sqlite:///{db}")
    assert adopt.returncode == 0, adopt.stderr
    again = atb(tmp_path, *SMA, f"db.url=sqlite:///{db}")
    assert again.returncode == 0, again.stderr[-2000:]
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from customers").fetchone()[0] == 2
        assert conn.execute("select count(*) from runs").fetchone()[0] == 1
    conn.close()


@pytest.mark.postgres
def test_foreign_postgres_database_is_refused(tmp_path: Path, pg_cluster) -> None:  # type: ignore[no-untyped-def]
    import sqlalchemy as sa

    url = pg_cluster.create_database()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("create table customers (id int primary key)"))
    proc = atb(tmp_path, *SMA, f"db.url={url}")
    assert proc.returncode == 1
    assert "another application's tables (customers)" in one_line(proc)
    with engine.connect() as conn:
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert tables == {"customers"}


def test_corrupt_sqlite_database_is_refused_at_start(tmp_path: Path) -> None:
    db = tmp_path / "atb.db"
    ok = atb(tmp_path, *SMA, f"db.url=sqlite:///{db}")
    assert ok.returncode == 0, ok.stderr[-2000:]
    with sqlite3.connect(db) as conn:  # fold the WAL in, so the damage is in the file
        conn.execute("pragma wal_checkpoint(truncate)")
    conn.close()
    size = db.stat().st_size
    with db.open("r+b") as f:  # scribble over a few b-tree pages, headers included
        for offset in range(4096 * 3, min(size, 4096 * 12), 4096):
            f.seek(offset)
            f.write(bytes((i * 37 + 11) % 256 for i in range(600)))
    before = digest(db)
    proc = atb(tmp_path, *SMA, f"db.url=sqlite:///{db}")
    assert proc.returncode == 1
    line = one_line(proc)
    assert "atb.db" in line and "damaged" in line and "restore it from a backup" in line
    assert digest(db) == before

    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(bytes(range(256)) * 40)
    proc = atb(tmp_path, *SMA, f"db.url=sqlite:///{garbage}")
    assert proc.returncode == 1
    assert "garbage.db" in one_line(proc) and "not a database" in proc.stderr


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_database_is_a_config_error(tmp_path: Path, url: str) -> None:
    proc = atb(tmp_path, *SMA, f"db.url={url}")
    assert proc.returncode == 2
    line = one_line(proc)
    assert line.startswith("config error: db.url:") and "in-memory" in line


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "0", "-1"])
def test_check_interval_must_be_finite_and_positive(tmp_path: Path, value: str) -> None:
    proc = atb(tmp_path, "mode=paper", "exchange=replay", *SMA, f"live.check_interval={value}",
               f"db.url=sqlite:///{tmp_path / 'a.db'}")  # fmt: skip
    assert proc.returncode == 2
    assert one_line(proc).startswith("config error: live.check_interval:")
    assert not (tmp_path / "a.db").exists()


@pytest.mark.parametrize("name", ["candles.zip", "candles.csv.xz", "candles.csv.gz"])
def test_garbage_compressed_data_file_names_the_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(bytes((i * 91 + 7) % 256 for i in range(3000)))
    proc = atb(tmp_path, *SMA, "data=csv", f"data.path={path}",
               f"db.url=sqlite:///{tmp_path / 'a.db'}")  # fmt: skip
    assert proc.returncode == 1
    line = one_line(proc)
    assert f"{path}: cannot read as CSV" in line


def test_valid_xz_data_file_still_loads(tmp_path: Path) -> None:
    rows = ["timestamp,open,high,low,close,volume"]
    rows += [f"2024-01-01T{h:02d}:00:00Z,1,2,0.5,1.5,10" for h in range(24)]
    path = tmp_path / "c.csv.xz"
    path.write_bytes(lzma.compress(("\n".join(rows) + "\n").encode()))
    from atb.data.loader import load_bars

    assert len(load_bars(path, "1h")) == 24


@pytest.mark.parametrize("column", ["timestamp", "close"])
def test_a_5mb_cell_is_not_echoed_whole(tmp_path: Path, column: str) -> None:
    big = ("T" if column == "timestamp" else "x") * 5_000_000
    cells = {"timestamp": "2024-01-01T01:00:00Z", "open": "1", "high": "2", "low": "0.5",
             "close": "1.5", "volume": "10", column: big}  # fmt: skip
    path = tmp_path / "big.csv"
    path.write_text(
        "timestamp,open,high,low,close,volume\n2024-01-01T00:00:00Z,1,2,0.5,1.5,10\n"
        + ",".join(cells.values()) + "\n"
    )  # fmt: skip
    proc = atb(tmp_path, *SMA, "data=csv", f"data.path={path}",
               f"db.url=sqlite:///{tmp_path / 'a.db'}")  # fmt: skip
    assert proc.returncode == 1
    line = one_line(proc)
    assert len(proc.stderr) < 1000 and "5000000 characters" in line
    assert f"{path}: row 2: {column}" in line


def test_config_error_clips_a_huge_value() -> None:
    from atb.config.validate import validate_config
    from atb.runtime.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        validate_config({"symbol": "", "timeframe": "9" * 5_000_000})
    text = "\n".join(info.value.problems)
    assert "timeframe" in text and len(text) < 1000 and "5000000 characters" in text
