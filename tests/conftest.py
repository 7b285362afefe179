"""Fixtures shared by every test directory.

- `pg_cluster` (session): a throwaway PostgreSQL cluster (initdb + pg_ctl on a temp dir and
  a free port). Skipped, with the reason, only when the PostgreSQL binaries are absent.
- `db_url`: a fresh, empty database URL, parametrised over SQLite and PostgreSQL, so a test
  that takes it runs against both. `sqlite_url` / `pg_url` pick one.
- `database`: a started `atb.db.node.Database` on `db_url` (migrated), stopped afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from atb_testkit.pgtemp import TempPostgres, find_pg_bin

NO_PG_REASON = (
    "PostgreSQL binaries (initdb, pg_ctl) not found on PATH or in /usr/lib/postgresql/*/bin: "
    "install the `postgresql` package to run the PostgreSQL half of the suite"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that reaches a PostgreSQL cluster is marked `postgres` however it gets there, so
    `nox -s unit` (which deselects the marker) never starts a cluster."""
    for item in items:
        if {"pg_cluster", "pg_url"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgres)


def make_cluster() -> TempPostgres:
    """A started cluster (callers destroy it); skips the test if PostgreSQL is absent."""
    if find_pg_bin() is None:
        pytest.skip(NO_PG_REASON)
    pg = TempPostgres()
    pg.init()
    pg.start()
    return pg


@pytest.fixture(scope="session", autouse=True)
def _spill_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Server databases spill under ~/.cache/atb/spill by default; keep tests out of it."""
    import os

    previous = os.environ.get("ATB_SPILL_DIR")
    os.environ["ATB_SPILL_DIR"] = str(tmp_path_factory.mktemp("spill"))
    yield
    if previous is None:
        os.environ.pop("ATB_SPILL_DIR", None)
    else:
        os.environ["ATB_SPILL_DIR"] = previous


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[TempPostgres]:
    pg = make_cluster()
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'atb.db'}"


@pytest.fixture
def pg_url(pg_cluster: TempPostgres) -> str:
    return pg_cluster.create_database()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """An empty database of each kind; not migrated (Database.start() migrates it)."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(name)
    return url


@pytest.fixture
def database(db_url: str) -> Iterator[Any]:
    from atb.db.node import Database, DatabaseConfig
    from atb.runtime.context import RunContext

    db = Database(
        DatabaseConfig.model_validate({"_target_": "atb.db.node.Database", "url": db_url}),
        RunContext(),
    )
    db.start()
    try:
        yield db
    finally:
        db.stop()
