"""Read a sweep's runs and store its ranked summary (DB row + CSV/JSON in the sweep dir)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


def _database(url: str) -> Any:
    from atb.db.node import Database, DatabaseConfig
    from atb.runtime.context import RunContext

    cfg = DatabaseConfig.model_validate({"_target_": "atb.db.node.Database", "url": url})
    db = Database(config=cfg, ctx=RunContext())
    db.start()
    return db


def load_sweep_runs(url: str, sweep_id: str) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from atb.db.models.run_records import Run

    db = _database(url)
    try:
        with db.session() as session:
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
        db.stop()


def _job_parameters(overrides: list[str] | None) -> dict[str, Any]:
    from atb.runtime.sweep import overrides_to_parameters

    return {
        k: v
        for k, v in overrides_to_parameters(list(overrides or [])).items()
        if not k.startswith(("db.", "hydra."))
    }


def store_summary(
    url: str,
    sweep_id: str,
    metric: str,
    descending: bool,
    ranked: list[dict[str, Any]],
    sweep_dir: Path,
) -> None:
    from atb.db.models.sweeps import Sweep

    failed = sum(1 for r in ranked if r["rank"] is None)
    db = _database(url)
    try:
        with db.session() as session:
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
        db.stop()
    (sweep_dir / "summary.json").write_text(json.dumps(ranked, indent=2, default=str))
    with open(sweep_dir / "summary.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["rank", "job_num", "status", metric, "run_id", "parameters", "error"])
        for r in ranked:
            writer.writerow(
                [r["rank"], r["job_num"], r["status"], r["score"], r["run_id"],
                 json.dumps(r["parameters"]), r["error"] or ""]
            )  # fmt: skip
