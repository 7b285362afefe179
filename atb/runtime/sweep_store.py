"""Read a sweep's runs and store its ranked summary (DB row + CSV/JSON in the sweep dir)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DbSection = str | Mapping[str, Any]


def _database(db: DbSection) -> Any:
    """A started Database node for a sweep's `db` section (or a bare URL).

    The whole section is used, not only the URL, so `auto_migrate: false` and the SQLite
    PRAGMAs (WAL, busy_timeout) apply to the sweep's own reads and writes as to every job's.
    """
    from atb.db.node import Database, DatabaseConfig
    from atb.runtime.context import RunContext

    section = {"url": db} if isinstance(db, str) else dict(db)
    section["_target_"] = "atb.db.node.Database"
    section.pop("enabled", None)
    cfg = DatabaseConfig.model_validate(section)
    database = Database(config=cfg, ctx=RunContext())
    try:
        database.start()
    except BaseException:
        database.stop()
        raise
    return database


def prepare_database(db: DbSection) -> None:
    """Connect and migrate a fresh database once, before any job starts.

    Every job's Database node runs the same check at start; two workers that both find an
    empty database would both run the Alembic upgrade and one would fail on "table exists".
    Doing it here first leaves the workers only a read of the revision.
    """
    _database(db).stop()


def load_sweep_runs(db: DbSection, sweep_id: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from atb.db.models.run_records import Run

    database = _database(db)
    try:
        with database.session() as session:
            rows = session.execute(select(Run).where(Run.sweep_id == sweep_id)).scalars().all()
            return [
                {
                    "run_id": r.id,
                    "job_num": r.job_num,
                    "status": r.status,
                    "error": r.error,
                    "strategy": r.strategy,
                    "parameters": _job_parameters(r.overrides),
                    "metrics": r.metrics,
                }
                for r in rows
            ]
    finally:
        database.stop()


def _job_parameters(overrides: list[str] | None) -> dict[str, Any]:
    from atb.runtime.sweep import overrides_to_parameters

    return {
        k: v
        for k, v in overrides_to_parameters(list(overrides or [])).items()
        if not k.startswith(("db.", "hydra."))
    }


def store_summary(
    db: DbSection,
    sweep_id: str,
    metric: str,
    descending: bool,
    ranked: list[dict[str, Any]],
    sweep_dir: Path,
) -> None:
    from atb.db.models.sweeps import Sweep
    from atb.logging.redaction import get_redactor

    # parameters and errors are user input: `exchange.api_key=...` swept on the command line
    ranked = get_redactor().redact(ranked)
    failed = sum(1 for r in ranked if r["rank"] is None)
    database = _database(db)
    try:
        with database.session() as session:
            session.merge(
                Sweep(
                    id=sweep_id,
                    metric=metric,
                    descending=descending,
                    jobs=len(ranked),
                    failed=failed,
                    ranking=json.loads(json.dumps(ranked, default=str)),
                )
            )
    finally:
        database.stop()
    (sweep_dir / "summary.json").write_text(json.dumps(ranked, indent=2, default=str))
    with open(sweep_dir / "summary.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["rank", "job_num", "status", metric, "run_id", "parameters", "error"])
        for r in ranked:
            writer.writerow(
                [r["rank"], r["job_num"], r["status"], r["score"], r["run_id"],
                 json.dumps(r["parameters"]), r["error"] or ""]
            )  # fmt: skip
