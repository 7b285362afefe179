"""`python -m atb [overrides]`: compose the config with Hydra, validate it, run the graph."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from atb.resources import config_dir

# The repository's conf/ in a source checkout, the wheel's atb/conf once installed.
CONFIG_DIR = str(config_dir())
NOISE = re.compile(r"^\s+(full_key|object_type|reference_type|parent_node|child_node)\b")


def run_job(cfg: Any) -> Any:
    """Hydra task function: one run, or one job of a sweep.

    A single run turns errors into exit codes (2: config, 1: a node failed). In a sweep a
    failing job is recorded as a failed run and returned, so the other jobs still run.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from atb.config.validate import validate_config
    from atb.logging.redaction import redact_obj, redact_override, redact_text
    from atb.runtime.context import ExchangeTarget, RunContext
    from atb.runtime.errors import ConfigError, NodeError
    from atb.runtime.outputs import config_sources, write_outputs
    from atb.runtime.runner import Runner

    hc = HydraConfig.get()
    sweeping = hc.mode == RunMode.MULTIRUN
    overrides = list(hc.overrides.task)
    output_dir = Path(hc.runtime.output_dir)
    identity: dict[str, Any] = {
        "output_dir": output_dir,
        "overrides": [redact_override(o) for o in overrides],
        "sweep_id": str(hc.sweep.dir) if sweeping else None,
        "job_num": int(hc.job.num) if sweeping else None,
    }
    label = " ".join(identity["overrides"])
    try:
        validated = validate_config(cfg)
    except ConfigError as exc:
        if not sweeping:
            report_config_error(exc)
            raise SystemExit(2) from None
        return _failed_job(cfg, identity, "config error: " + "; ".join(exc.problems), label)

    secrets = validated.secrets
    install_run_redactor(validated)
    safe_overrides = [redact_override(o, secrets) for o in overrides]
    strategy = validated.nodes["strategy"].config if "strategy" in validated.nodes else None
    exchange = validated.nodes.get("exchange")
    ctx = RunContext(
        mode=validated.settings.mode,
        symbol=validated.settings.symbol,
        timeframe=validated.settings.timeframe,
        strategy=getattr(strategy, "name", None),
        exchange=ExchangeTarget.of(exchange.config.model_dump(by_alias=True)) if exchange else None,
        config=redact_obj(validated.raw, secrets),
        secrets=secrets,
        config_sources=config_sources(hc, OmegaConf.to_yaml(cfg, resolve=False), safe_overrides),
        **{**identity, "overrides": safe_overrides},
    )
    if validated.settings.runner.write_outputs:
        hydra_cfg = OmegaConf.to_container(hc, resolve=False, enum_to_str=True)
        write_outputs(output_dir, validated.raw, overrides, hydra_cfg, secrets)  # type: ignore[arg-type]

    runner = Runner(validated, ctx)
    try:
        result = runner.run()
    except ConfigError as exc:
        if not sweeping:
            report_config_error(exc)
            raise SystemExit(2) from None
        return _sweep_outcome(identity, ctx.run_id, "failed", "; ".join(exc.problems), label)
    except NodeError as exc:
        message = redact_text(str(exc), secrets)
        if not sweeping:
            print(f"atb: error: {message}", file=sys.stderr)
            raise SystemExit(1) from None
        return _sweep_outcome(identity, ctx.run_id, "failed", message, label)
    except KeyboardInterrupt:
        print("atb: interrupted", file=sys.stderr)
        raise SystemExit(130) from None
    if sweeping:
        return _sweep_outcome(identity, ctx.run_id, "finished", None, label)
    return result


def install_run_redactor(validated: Any) -> None:
    """The run's redactor, in place before the first file or row is written.

    The `redaction` node installs the same one when the graph is built; doing it here too
    means `.hydra/` copies and the run record already obey the user's extra keys/patterns.
    """
    from atb.logging.redaction import (
        DEFAULT_SECRET_ENV,
        Redactor,
        secrets_from_env,
        set_redactor,
    )
    from atb.logging.redaction_node import redactor_from_config

    spec = validated.nodes.get("redaction")
    if spec is not None:
        set_redactor(redactor_from_config(spec.config, validated.secrets))
    else:
        env = secrets_from_env(DEFAULT_SECRET_ENV)
        set_redactor(Redactor(secrets=set(validated.secrets) | env))


def _failed_job(cfg: Any, identity: dict[str, Any], error: str, label: str) -> Any:
    from omegaconf import OmegaConf

    from atb.logging.redaction import redact_obj
    from atb.runtime.sweep_store import record_failed_job

    try:
        raw = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # the error being recorded may be an unresolvable value
        raw = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(raw, dict)
    fields = {
        **identity,
        "mode": str(raw.get("mode", "backtest")),
        "symbol": str(raw.get("symbol", "")),
        "timeframe": str(raw.get("timeframe", "")),
        "config": redact_obj(raw),
    }
    run_id = None
    try:
        run_id = record_failed_job(raw, fields, error)  # type: ignore[arg-type]
    except Exception as exc:  # recording is best effort; the job already failed
        print(f"atb: could not record failed job: {exc}", file=sys.stderr)
    return _sweep_outcome(identity, run_id, "failed", error, label)


def _sweep_outcome(
    identity: dict[str, Any], run_id: str | None, status: str, error: str | None, label: str
) -> Any:
    from atb.runtime.sweep import JobOutcome, note_progress

    note_progress(Path(identity["sweep_id"]), status, identity["job_num"], label)
    if error:
        print(f"atb: job {identity['job_num']} failed: {error}", file=sys.stderr)
    return JobOutcome(run_id=run_id, status=status, error=error)


def report_config_error(exc: Any) -> None:
    for line in exc.problems:
        print(f"config error: {line}", file=sys.stderr)


def version_line() -> str:
    """`atb 0.1.0 (Hydra 1.3.2, Python 3.11.2)`: Hydra's own --version names only itself."""
    import platform

    from hydra import __version__ as hydra_version

    from atb import __version__

    return f"atb {__version__} (Hydra {hydra_version}, Python {platform.python_version()})"


def output_error(exc: OSError) -> str:
    """One line for a file atb could not write, naming the setting that chose the place."""
    from atb.logging.redaction import redact_text

    path = str(exc.filename)
    hint = ""
    for var in ("ATB_OUTPUT_DIR", "ATB_MULTIRUN_DIR"):
        value = os.environ.get(var)
        if value and path.startswith(value.rstrip("/")):
            hint = f" (from {var}={value})"
    reason = exc.strerror or type(exc).__name__
    return redact_text(f"cannot write {path}: {reason}{hint}")


def main(argv: list[str] | None = None) -> None:
    """Run Hydra with our own error reporting.

    Hydra prints composition errors and exits 1; atb promises exit 2 for any config
    error, so Hydra is asked to re-raise (HYDRA_FULL_ERROR) and errors are reported here.
    """
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("--version", "-V") for a in args):
        print(version_line())
        return
    if any(a in ("--help", "-h") for a in args):
        from atb.runtime.help import render_help

        print(render_help(Path(CONFIG_DIR)))
        return

    import hydra
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    from atb.runtime import tuning
    from atb.runtime.printed import redact_printed_config

    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    tuning.skip_hydra_mode_probe(args)
    redact_printed_config(args)
    entry = hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")(run_job)
    try:
        entry()
    except (HydraException, MissingConfigException, OmegaConfBaseException) as exc:
        if full_error:
            raise
        message = str(exc).strip()
        cause = exc.__cause__
        if isinstance(cause, OmegaConfBaseException):
            message += f"\n{str(cause).strip()}"
        for line in message.splitlines():
            # OmegaConf appends its internal node description; it says nothing to a user.
            if line.strip() and not NOISE.match(line):
                print(f"config error: {line.strip()}", file=sys.stderr)
        raise SystemExit(2) from None
    except OSError as exc:
        # Hydra creates the output dir before atb's code runs (ATB_OUTPUT_DIR=/proc/atb)
        if full_error or not exc.filename:
            raise
        print(f"atb: error: {output_error(exc)}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        if not full_error:
            os.environ.pop("HYDRA_FULL_ERROR", None)


if __name__ == "__main__":
    from atb.runtime.quick_exit import run_then_exit

    run_then_exit(main)
