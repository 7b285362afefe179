"""Redacted copies of what Hydra would write to `.hydra/` (it is told not to)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml

from atb.logging.redaction import redact_obj, redact_override

ENV_REF = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)")


def config_sources(hydra_cfg: Any, unresolved: str, overrides: list[str]) -> dict[str, list[str]]:
    """Which providers contributed to this run's config, for /status and run records."""
    files = [
        f"{src.provider}:{src.path}"
        for src in getattr(hydra_cfg.runtime, "config_sources", [])
        if src.provider not in ("hydra",)
    ]
    env = sorted({name for name in ENV_REF.findall(unresolved) if name in os.environ})
    choices = {
        k: v for k, v in dict(hydra_cfg.runtime.choices).items() if not k.startswith("hydra/")
    }
    return {
        "defaults": [f"{k}={v}" for k, v in choices.items()],
        "config_files": files,
        "env_vars": env,
        "command_line": list(overrides),
    }


def write_outputs(
    output_dir: Path,
    resolved: dict[str, Any],
    overrides: list[str],
    hydra_cfg: dict[str, Any] | None,
    secrets: frozenset[str],
) -> None:
    target = output_dir / ".hydra"
    target.mkdir(parents=True, exist_ok=True)
    safe_overrides = [redact_override(o, secrets) for o in overrides]
    files: dict[str, Any] = {
        "config.yaml": redact_obj(resolved, secrets),
        "overrides.yaml": safe_overrides,
    }
    if hydra_cfg is not None:
        hydra_safe = redact_obj(hydra_cfg, secrets)
        overrides_node = hydra_safe.get("overrides", {})
        for key in ("task", "hydra"):
            if key in overrides_node:
                overrides_node[key] = [redact_override(o, secrets) for o in overrides_node[key]]
        job = hydra_safe.get("job", {})
        if "override_dirname" in job:
            job["override_dirname"] = ",".join(sorted(safe_overrides))
        files["hydra.yaml"] = {"hydra": hydra_safe}
    for name, content in files.items():
        (target / name).write_text(yaml.safe_dump(content, sort_keys=False), encoding="utf-8")
