"""What a dashboard session is told: where the database is, how often to refresh, where
CSV exports live.

The same settings reach a dashboard three ways: `atb dashboards run` and the `dashboards`
node hand them to `create_app` directly; `panel serve panels/NAME.py` builds them from
`--args --db-url ...` and `ATB_DASHBOARD_*` environment variables, falling back to the
`dashboards` config group's defaults.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ENV_PREFIX = "ATB_DASHBOARD_"


class DashboardSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    db_url: str = Field("sqlite:///atb.db", min_length=1)
    update_interval: float = Field(5.0, gt=0, description="seconds between periodic updates")
    logs_dir: Path | None = Field(None, description="directory of CSV trade exports")


def config_defaults(name: str | None = None) -> dict[str, Any]:
    """The `dashboards` config group's settings for dashboard `name` (resolved `db.url`).

    Composes `conf/` with Hydra's compose API so `atb dashboards run` and the run graph
    read one source of defaults. Falls back to `dashboards=monitoring` for a dashboard
    without its own option file.
    """
    from atb.__main__ import CONFIG_DIR

    option = (
        name
        if name and (Path(CONFIG_DIR) / "dashboards" / f"{name}.yaml").exists()
        else ("monitoring")
    )
    return dict(_compose_defaults(option))


@lru_cache(maxsize=8)
def _compose_defaults(option: str) -> tuple[tuple[str, Any], ...]:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from atb.__main__ import CONFIG_DIR

    # Composition is global Hydra state; borrow it only when no one else holds it.
    was_initialized = GlobalHydra.instance().is_initialized()
    try:
        if was_initialized:
            cfg = compose("config", overrides=[f"dashboards={option}"])
        else:
            with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
                cfg = compose("config", overrides=[f"dashboards={option}"])
        data = OmegaConf.to_container(cfg.dashboards, resolve=True)
    except Exception:  # a broken config must not take the dashboards down with it
        return ()
    assert isinstance(data, dict)
    return tuple((str(k), v) for k, v in data.items())


def parse_serve_args(argv: Sequence[str]) -> dict[str, Any]:
    """`panel serve panels/NAME.py --args --db-url URL --update-interval S --logs-dir DIR`."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--db-url")
    parser.add_argument("--update-interval", type=float)
    parser.add_argument("--logs-dir")
    known, _ = parser.parse_known_args(list(argv))
    return {k: v for k, v in vars(known).items() if v is not None}


def settings_from_env(
    name: str | None = None,
    argv: Sequence[str] | None = None,
    environ: dict[str, str] | None = None,
) -> DashboardSettings:
    """Settings for a `panel serve` session: CLI args > ATB_DASHBOARD_* env > config group."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    defaults = config_defaults(name)
    for key in DashboardSettings.model_fields:
        if defaults.get(key) is not None:
            values[key] = defaults[key]
        env_value = env.get(ENV_PREFIX + key.upper())
        if env_value:
            values[key] = env_value
    values.update(parse_serve_args(argv if argv is not None else _script_args()))
    return DashboardSettings.model_validate(values)


def _script_args() -> list[str]:
    import sys

    # Under `panel serve x.py --args ...` the script's sys.argv is [x.py, ...args].
    return sys.argv[1:]
