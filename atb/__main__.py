"""`python -m atb [overrides]`: compose the config with Hydra, validate it, run the graph."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def run_job(cfg: Any) -> Any:
    """Hydra task function: one run (or one job of a sweep)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    from atb.config.secrets import redact_override
    from atb.config.validate import validate_config
    from atb.runtime.context import RunContext
    from atb.runtime.errors import ConfigError, NodeError
    from atb.runtime.outputs import config_sources, write_outputs
    from atb.runtime.runner import Runner

    hc = HydraConfig.get()
    overrides = list(hc.overrides.task)
    try:
        validated = validate_config(cfg)
    except ConfigError as exc:
        report_config_error(exc)
        raise SystemExit(2) from None

    secrets = validated.secrets
    from atb.config.secrets import redact_obj

    safe_overrides = [redact_override(o, secrets) for o in overrides]
    output_dir = Path(hc.runtime.output_dir)
    strategy = validated.raw.get("strategy", {})
    ctx = RunContext(
        mode=validated.settings.mode,
        symbol=validated.settings.symbol,
        timeframe=validated.settings.timeframe,
        strategy=strategy.get("name") if isinstance(strategy, dict) else None,
        output_dir=output_dir,
        overrides=safe_overrides,
        config=redact_obj(validated.raw, secrets),
        secrets=secrets,
        sweep_id=_sweep_id(hc),
        job_num=hc.job.get("num") if hc.mode is not None and str(hc.mode).endswith("MULTIRUN") else None,
        config_sources=config_sources(hc, OmegaConf.to_yaml(cfg, resolve=False), safe_overrides),
    )
    if validated.settings.runner.write_outputs:
        hydra_cfg = OmegaConf.to_container(hc, resolve=False)
        write_outputs(output_dir, validated.raw, overrides, hydra_cfg, secrets)  # type: ignore[arg-type]

    runner = Runner(validated, ctx)
    try:
        return runner.run()
    except NodeError as exc:
        from atb.config.secrets import redact_text

        print(f"atb: error: {redact_text(str(exc), secrets)}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        print("atb: interrupted", file=sys.stderr)
        raise SystemExit(130) from None


def _sweep_id(hc: Any) -> str | None:
    if hc.mode is None or not str(hc.mode).endswith("MULTIRUN"):
        return None
    return str(hc.sweep.dir)


def report_config_error(exc: Any) -> None:
    for line in exc.problems:
        print(f"config error: {line}", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    """Run Hydra with our own error reporting.

    Hydra prints composition errors and exits 1; atb promises exit 2 for any config
    error, so Hydra is asked to re-raise (HYDRA_FULL_ERROR) and errors are reported here.
    """
    args = sys.argv[1:] if argv is None else argv
    if any(a in ("--help", "-h") for a in args):
        from atb.runtime.help import render_help

        print(render_help(Path(CONFIG_DIR)))
        return

    import hydra
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    full_error = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
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
            if line.strip():
                print(f"config error: {line}", file=sys.stderr)
        raise SystemExit(2) from None
    finally:
        if not full_error:
            os.environ.pop("HYDRA_FULL_ERROR", None)


if __name__ == "__main__":
    main()
