"""Alembic environment shipped inside the package (see atb/db/migrate.py).

A package (not a bare folder) so setuptools ships env.py and versions/*.py as package data.
"""

# The newest revision in versions/, known without importing Alembic: `Database.start()`
# compares it with the database's alembic_version in one query, so a run on a current
# database never pays Alembic's import (~0.3 s). Bump it with every new migration;
# tests/db/test_db_schema.py fails until it equals the head Alembic computes.
HEAD_REVISION = "0006_run_heartbeats"
