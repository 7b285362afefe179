"""A new SQLite file is created at the head without Alembic (start-up time), and the result
is the schema the migrations build: same tables, columns, types, defaults, keys, indexes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, create_engine, inspect

from atb.db.migrate import create_fresh_sqlite, is_current, schema_state, upgrade
from atb.db.models import Base


def _schema(engine: Engine) -> dict[str, Any]:
    insp = inspect(engine)
    out: dict[str, Any] = {}
    for table in sorted(insp.get_table_names()):
        out[table] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                for c in insp.get_columns(table)
            ],
            "pk": insp.get_pk_constraint(table),
            "fks": sorted(map(str, insp.get_foreign_keys(table))),
            "indexes": sorted(map(str, insp.get_indexes(table))),
            "uniques": sorted(map(str, insp.get_unique_constraints(table))),
            "checks": sorted(map(str, insp.get_check_constraints(table))),
        }
    return out


def test_fresh_create_equals_the_migrated_schema(tmp_path: Path) -> None:
    migrated = create_engine(f"sqlite:///{tmp_path / 'migrated.db'}")
    upgrade(migrated)
    fresh = create_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert create_fresh_sqlite(fresh)
    try:
        assert _schema(fresh) == _schema(migrated)
        assert is_current(fresh)
        assert schema_state(fresh).status == "current"
        with migrated.connect() as conn:  # and the migrations still match the models
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        migrated.dispose()
        fresh.dispose()


def test_a_file_with_tables_is_left_to_the_usual_check(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'other.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE notes (id INTEGER PRIMARY KEY)")
    try:
        assert not create_fresh_sqlite(engine)
        assert inspect(engine).get_table_names() == ["notes"]
    finally:
        engine.dispose()


JOB = """
import sys
from atb.db.node import Database, DatabaseConfig
from atb.runtime.context import RunContext
db = Database(DatabaseConfig.model_validate({"_target_": "x", "url": sys.argv[1]}), RunContext())
db.start()
db.stop()
"""


@pytest.mark.slow  # four interpreters starting at once
def test_parallel_first_starts_on_one_new_file(tmp_path: Path) -> None:
    """Sweep jobs starting together on a new file: one creates it, the others accept it."""
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    procs = [
        subprocess.Popen([sys.executable, "-c", JOB, url], stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    engine = create_engine(url)
    try:
        assert is_current(engine)
    finally:
        engine.dispose()
