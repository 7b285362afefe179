"""Multirun sweeps: failed jobs recorded instead of fatal, progress, the ranked summary.

Hydra runs each job through `atb.__main__.run_job`; in a sweep a job that fails (a bad
parameter combination, a node error) is recorded as a failed run with its reason and the
sweep goes on. `SweepCallback` (registered in conf/config.yaml under hydra.callbacks) keeps
the progress count, keeps command-line secrets out of `multirun.yaml`, and at the end prints
and stores the ranking by `sweep.metric`.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from atb.logging.redaction import redact_override
from atb.runtime import tuning
from atb.runtime.bars_prefetch import prefetch_bars

PROGRESS = ".atb-progress"
TOTAL = ".atb-total"


@dataclass(frozen=True)
class JobOutcome:
    """What a sweep job returns to Hydra: never an exception, so the sweep continues."""

    run_id: str | None
    status: str
    error: str | None = None


def note_progress(sweep_dir: Path, status: str, job_num: int | None, label: str) -> None:
    """Append this job's outcome and print `[sweep] 3/6 done, 1 failed` (jobs run in workers)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    # The database and Hydra settings are the same for every job: noise in a progress line.
    label = " ".join(t for t in label.split() if not t.startswith(("db.", "hydra.")))
    with open(sweep_dir / PROGRESS, "a+", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(f"{job_num}\t{status}\t{label}\n")
        fh.flush()
        fh.seek(0)
        lines = [line.split("\t") for line in fh.read().splitlines() if line]
        fcntl.flock(fh, fcntl.LOCK_UN)
    failed = sum(1 for parts in lines if len(parts) > 1 and parts[1] != "finished")
    total_file = sweep_dir / TOTAL
    total = total_file.read_text().strip() if total_file.exists() else "?"
    print(
        f"[sweep] {len(lines)}/{total} jobs done, {failed} failed "
        f"(job {job_num}: {status} {label})",
        file=sys.stderr,
        flush=True,
    )


def sweep_overrides(config: DictConfig) -> list[str]:
    """The sweep's overrides: `hydra.sweeper.params` (experiment files) then the command line.

    The basic sweeper lets a command-line override replace a sweeper param of the same key.
    """
    merged: dict[str, str] = {}
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    for key, value in params.items():
        merged[str(key)] = f"{key}={value}"
    for item in OmegaConf.select(config, "hydra.overrides.task") or []:
        merged[str(item).partition("=")[0]] = str(item)
    return list(merged.values())


def count_jobs(overrides: list[str]) -> int:
    """Number of jobs the basic sweeper makes from comma/range/choice sweeps."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    total = 1
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override():
            total *= max(1, sum(1 for _ in override.sweep_string_iterator()))
    return total


class _RedactingOmegaConf:
    """Stands in for OmegaConf inside Hydra's basic sweeper, whose only write is
    `OmegaConf.save(config, <sweep dir>/multirun.yaml)`: the file is written redacted
    (body and override lists) instead of being written in clear and fixed afterwards."""

    def __getattr__(self, name: str) -> Any:
        return getattr(OmegaConf, name)

    @staticmethod
    def save(config: Any, f: Any, resolve: bool = False) -> None:
        from atb.logging.redaction import get_redactor, override_secrets

        data = OmegaConf.to_container(config, resolve=resolve, enum_to_str=True)
        overrides = ((data or {}).get("hydra") or {}).get("overrides") or {}  # type: ignore[union-attr]
        red = get_redactor()
        red.add_secrets(override_secrets([str(o) for o in overrides.get("task") or []]))
        safe = red.redact(data)
        path = Path(f)
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(yaml.safe_dump(safe, sort_keys=False, allow_unicode=True), encoding="utf-8")
        os.replace(tmp, path)
        redact_multirun_yaml(path.parent)


def install_redacted_multirun_save() -> None:
    from hydra._internal.core_plugins import basic_sweeper

    if not isinstance(basic_sweeper.OmegaConf, _RedactingOmegaConf):
        basic_sweeper.OmegaConf = _RedactingOmegaConf()  # type: ignore[misc, assignment]


def redact_multirun_yaml(sweep_dir: Path) -> None:
    """Hydra saves the sweep's config with its overrides verbatim; mask secret-looking ones."""
    path = sweep_dir / "multirun.yaml"
    if not path.exists():
        return
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    overrides = (data.get("hydra") or {}).get("overrides") or {}
    changed = False
    for key in ("task", "hydra"):
        items = overrides.get(key) or []
        safe = [redact_override(str(o)) for o in items]
        if safe != items:
            overrides[key] = safe
            changed = True
    job = (data.get("hydra") or {}).get("job") or {}
    if "override_dirname" in job and changed:
        job["override_dirname"] = ",".join(overrides.get("task") or [])
    if changed:
        tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        os.replace(tmp, path)


def rank_runs(
    runs: list[dict[str, Any]], metric: str, descending: bool = True
) -> list[dict[str, Any]]:
    """Finished runs by metric (missing/NaN last), then failed runs in job order."""

    def value(run: dict[str, Any]) -> float | None:
        raw = (run.get("metrics") or {}).get(metric)
        if raw is None:
            return None
        number = float(raw)
        return None if math.isnan(number) else number

    done = [r for r in runs if r.get("status") == "finished"]
    scored = [r for r in done if value(r) is not None]
    unscored = [r for r in done if value(r) is None]
    sign = -1.0 if descending else 1.0
    scored.sort(key=lambda r: (sign * (value(r) or 0.0), r.get("job_num") or 0))
    failed = sorted(
        (r for r in runs if r.get("status") != "finished"), key=lambda r: r.get("job_num") or 0
    )
    ranked = []
    for rank, run in enumerate([*scored, *unscored], start=1):
        ranked.append({**run, "rank": rank, "score": value(run)})
    ranked += [{**run, "rank": None, "score": None} for run in failed]
    return ranked


def varying_parameters(runs: list[dict[str, Any]]) -> list[str]:
    """Parameter keys whose value differs between jobs (all keys when none differ)."""
    keys: dict[str, set[str]] = {}
    for run in runs:
        for key, value in (run.get("parameters") or {}).items():
            keys.setdefault(key, set()).add(repr(value))
    varying = [k for k, values in keys.items() if len(values) > 1]
    return varying or list(keys)


def format_ranking(ranked: list[dict[str, Any]], metric: str) -> str:
    """The table printed at the end; only the parameters that vary, so the columns stay short."""
    header = ["rank", "job", "status", metric, "total_return", "max_drawdown", "trades"]
    header.append("parameters")
    shown = varying_parameters(ranked)
    rows = [header]
    for run in ranked:
        m = run.get("metrics") or {}
        values = run.get("parameters") or {}
        params = " ".join(f"{k}={values[k]}" for k in shown if k in values)
        rows.append(
            [
                str(run["rank"] or "-"),
                str(run.get("job_num")),
                str(run.get("status")),
                _fmt(run.get("score")),
                _fmt(m.get("total_return")),
                _fmt(m.get("max_drawdown")),
                str(m.get("num_trades", m.get("trades", "-"))),
                params if run.get("status") == "finished" else f"{params}  ({run.get('error')})",
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) for row in rows]
    return "\n".join(f"{line}  {row[-1]}" for line, row in zip(lines, rows, strict=True))


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.4f}"
    except (TypeError, ValueError):
        return str(value)


class SweepCallback(Callback):
    """Registered as hydra.callbacks.sweep; runs in the launching process, around all jobs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        install_redacted_multirun_save()
        overrides = sweep_overrides(config)
        # First, so the parse overlaps everything else the launcher does before the jobs.
        prefetch_bars(config, overrides)
        try:
            total = count_jobs(overrides)
        except Exception:  # a count is only for the progress line; never fail the sweep on it
            total = 0
        (sweep_dir / TOTAL).write_text(str(total or "?"))
        print(f"[sweep] {total or '?'} jobs -> {sweep_dir}", file=sys.stderr, flush=True)
        self._prepare_database(config)
        tune_local_sweep(config)

    @staticmethod
    def _prepare_database(config: DictConfig) -> None:
        """Migrate once here so parallel workers never race on an empty database.

        A database every job would fail on (unreachable, schema behind) stops the sweep
        now with the reason, rather than N times over; SystemExit passes Hydra's callback
        guard, which turns ordinary exceptions into warnings.
        """
        section = _db_section(config)
        if section is None:
            return
        from atb.logging.redaction import redact_text
        from atb.runtime.sweep_store import prepare_database

        try:
            prepare_database(section)
        except Exception as exc:
            print(f"atb: error: {redact_text(str(exc))}", file=sys.stderr, flush=True)
            raise SystemExit(1) from None

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        # multirun.yaml is written after on_multirun_start; the first job sees it on disk.
        redact_multirun_yaml(Path(config.hydra.sweep.dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        redact_multirun_yaml(sweep_dir)
        settings = OmegaConf.select(config, "sweep") or {}
        metric = str(settings.get("metric", "sharpe"))
        descending = bool(settings.get("descending", True))
        section = _db_section(config)
        if section is None:
            return
        from atb.runtime.sweep_store import load_sweep_runs, store_summary

        runs = load_sweep_runs(section, str(sweep_dir))
        ranked = rank_runs(runs, metric, descending)
        if ranked and not any(r["score"] is not None for r in ranked):
            known = sorted({k for r in runs for k in (r.get("metrics") or {})})
            why = (
                f"no job has a value for {metric!r} (no trades, or no drawdown to divide by?)"
                if metric in known
                else f"no job reported metric {metric!r}; sweep.metric can be one of: "
                + ", ".join(known)
            )
            print(f"[sweep] {why}", file=sys.stderr)
        failed = sum(1 for r in ranked if r["rank"] is None)
        print(
            f"\n[sweep] {len(ranked)} jobs, {failed} failed, ranked by {metric}"
            f" ({'high' if descending else 'low'} first):\n{format_ranking(ranked, metric)}",
            file=_report_stream(config),
            flush=True,
        )
        store_summary(section, str(sweep_dir), metric, descending, ranked, sweep_dir)
        print(f"[sweep] summary: {sweep_dir / 'summary.csv'}", file=sys.stderr, flush=True)


def _report_stream(config: DictConfig) -> Any:
    """stderr when the run's logging puts JSON records on stdout (stdout stays JSON)."""
    from atb.logging.setup import report_stream

    try:
        from atb.config.logging import LoggingConfig

        section = OmegaConf.to_container(config.logging, resolve=True)
        return report_stream(LoggingConfig.model_validate(section))
    except Exception:  # no or odd logging section: the environment (LOG_JSON, ENV) decides
        return report_stream()


def warm_imports(config: DictConfig) -> None:
    """Import every node class the sweep names, in the launching process.

    Launchers that fork their workers (joblib's multiprocessing backend) then hand each
    worker these modules already loaded instead of paying the import seconds once per worker.
    """
    import importlib

    importlib.import_module("atb.runtime.runner")
    for key in config:
        node = OmegaConf.select(config, str(key), throw_on_missing=False)
        target = OmegaConf.select(node, "_target_") if isinstance(node, DictConfig) else None
        if isinstance(target, str) and "." in target:
            module, _, _ = target.rpartition(".")
            # A bad target is the job's error to report, with its context; not this warm-up's.
            with contextlib.suppress(Exception):
                importlib.import_module(module)


def _db_section(config: DictConfig) -> dict[str, Any] | None:
    """The sweep's resolved `db` section, or None when the run graph has no database."""
    node = OmegaConf.select(config, "db")
    if node is None:
        return None
    section = OmegaConf.to_container(node, resolve=True)
    if not isinstance(section, dict) or not section.get("url") or not section.get("enabled", True):
        return None
    return {str(k): v for k, v in section.items()}


JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def tune_local_sweep(config: DictConfig) -> None:
    """Speed up a local sweep in this, the launching, process (idempotent).

    The patches and what each buys are in `atb.runtime.tuning`. Forked workers only with
    the joblib launcher and no explicit `hydra.launcher.backend` (then the plugin's own
    behaviour is kept), on a platform that forks.
    """
    tuning.cover_sweep_validation()
    target = OmegaConf.select(config, "hydra.launcher._target_")
    explicit = OmegaConf.select(config, "hydra.launcher.backend")
    if target == JOBLIB_LAUNCHER and not explicit and tuning.fork_available():
        tuning.fork_joblib_workers()
        warm_imports(config)
