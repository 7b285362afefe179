"""Persistence: SQLAlchemy models, the database node, migrations and the event journal.

Run-graph nodes (conf/db/sqlite.yaml, conf/db/postgres.yaml; both define `db` and `journal`):

- `db` -> `atb.db.node.Database`: one engine per run (`.engine`, `.session()`); `start()`
  connects (a bad URL or unreachable server fails with the URL's password masked) and
  checks the schema: an empty database is migrated (`auto_migrate`), an older one stops
  the run with "database at revision X, code expects Y: run `atb db upgrade`".
  SQLite (WAL) by default; `db=postgres db.url=postgresql+psycopg://...` for PostgreSQL.
  `ATB_DB_URL` overrides the URL in both files; `DATABASE_URL` is read by `db=postgres`.
- `journal` -> `atb.db.journal.Journal`: every atb.logging event, WARNING+ record and
  alert becomes a `system_events` row without the caller ever waiting on the database;
  spills to a local file while the database is down and replays it exactly once. See
  the package docstring for the hard-kill loss window. While it runs it is the run's
  `ctx.journal`, and `Journal.state()` is published as `ctx.probes` "journal" for the health
  server.
- `atb.db.bulk`: the one fast path for inserting many rows (journal, backtest records,
  test/benchmark sample data) and how each backend wants its values.

Models: `atb.db.models` (system_events here; run records and sweeps from the engine).
Migrations: `atb/db/migrations` (Alembic, configured in code by `atb.db.migrate`).
Commands (`atb.db.cli`): `atb db upgrade|current|replay|records`, `atb tests heartbeat`.
Tests and benchmarks start a throwaway PostgreSQL cluster with
`tests/support/atb_testkit/pgtemp.py`.
"""
