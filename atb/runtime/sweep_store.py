"""A sweep's database side: record a job that failed before it ran, read the sweep's runs,
store its ranked summary (DB row + CSV/JSON in the sweep dir)."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

DbSection = str | Mapping[str, Any]


def open_database(db: DbSection) -> Any:
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


def overrides_to_parameters(overrides: list[str]) -> dict[str, Any]:
    """`["strategy.fast=5", "strategy=sma_crossover"]` -> `{"strategy.fast": 5, ...}`."""
    params: dict[str, Any] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            continue
        key = key.lstrip("+~")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        # YAML reads `2024-06-01` as a date; parameters go into JSON columns and files, so
        # anything but plain JSON scalars keeps the text the user typed.
        params[key] = parsed if isinstance(parsed, _JSON_SCALARS) else value
    return params


_JSON_SCALARS = (str, int, float, bool, type(None))


def record_failed_job(
    raw: dict[str, Any] | None, ctx_fields: dict[str, Any], error: str
) -> str | None:
    """Write a `runs` row with status failed for a job that never got to build its nodes."""
    section = (raw or {}).get("db") or {}
    if not isinstance(section, dict) or not section.get("url") or not section.get("enabled", True):
        return None
    from atb.db.models.run_records import Run
    from atb.runtime.context import RunContext

    ctx = RunContext(**ctx_fields)
    try:
        db = open_database(section)
    except ValidationError:
        # The job may have failed on its own db section; the URL alone still records it.
        db = open_database(str(section["url"]))
    try:
        now = datetime.now(UTC)
        strategy = (raw or {}).get("strategy") or {}
        with db.session() as session:
            session.add(
                Run(
                    id=ctx.run_id,
                    mode=ctx.mode,
                    strategy=strategy.get("name") if isinstance(strategy, dict) else None,
                    symbol=ctx.symbol,
                    timeframe=ctx.timeframe,
                    status="failed",
                    error=error,
                    started_at=now,
                    finished_at=now,
                    config=ctx.config,
                    overrides=ctx.overrides,
                    parameters=overrides_to_parameters(ctx.overrides),
                    sweep_id=ctx.sweep_id,
                    job_num=ctx.job_num,
                )
            )
    finally:
        db.stop()
    return ctx.run_id


def prepare_database(db: DbSection) -> None:
    """Connect and migrate a fresh database once, before any job starts.

    Every job's Database node runs the same check at start; two workers that both find an
    empty database would both run the Alembic upgrade and one would fail on "table exists".
    Doing it here first leaves the workers only a read of the revision.
    """
    open_database(db).stop()


def load_sweep_runs(db: DbSection, sweep_id: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from atb.db.models.run_records import Run

    database = open_database(db)
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
    database = open_database(db)
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
