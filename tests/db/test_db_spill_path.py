"""The journal's default spill file: stable per database, never named after a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from atb.db.url import default_spill_path, parse_url


@pytest.fixture(autouse=True)
def _spill_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("ATB_SPILL_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def spill(url: str, output_dir: str | None = "/runs/1") -> Path:
    return default_spill_path(parse_url(url), output_dir)


def test_sqlite_file_spills_next_to_the_database(tmp_path: Path) -> None:
    assert spill(f"sqlite:///{tmp_path}/atb.db") == tmp_path / "atb.db.journal.jsonl"


def test_in_memory_sqlite_spills_in_the_run_output_dir() -> None:
    assert spill("sqlite://") == Path("/runs/1/journal-spill.jsonl")


def test_server_database_spills_to_one_stable_file_per_database(tmp_path: Path) -> None:
    first = spill("postgresql+psycopg://atb:s3cret@db.example:5432/atb", "/runs/1")
    assert first.parent == tmp_path / "cache" / "atb" / "spill"
    assert first.name.startswith("postgresql-") and first.suffix == ".jsonl"
    assert "s3cret" not in str(first) and "example" not in str(first)
    # The next run on the same database finds the same file, whatever its output dir,
    # driver spelling, password or query options.
    assert spill("postgres://atb:rotated@db.example:5432/atb?sslmode=require", "/runs/2") == first
    # Another database, port, host or user is another file.
    for other in (
        "postgresql+psycopg://atb:s3cret@db.example:5432/other",
        "postgresql+psycopg://atb:s3cret@db.example:5433/atb",
        "postgresql+psycopg://atb:s3cret@db2.example:5432/atb",
        "postgresql+psycopg://bot:s3cret@db.example:5432/atb",
    ):
        assert spill(other) != first, other


def test_spill_dir_can_be_set(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ATB_SPILL_DIR", str(tmp_path / "spill"))
    assert spill("postgresql+psycopg://atb@h/atb").parent == tmp_path / "spill"
