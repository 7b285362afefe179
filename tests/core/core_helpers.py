from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

RunAtb = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def atb_run(tmp_path: Path) -> RunAtb:
    """Run `python -m atb ...` (or another module) in a subprocess with a temp DB and output dir."""

    def run(
        *args: str,
        module: str = "atb",
        env: dict[str, str] | None = None,
        timeout: float = 120,
        db: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        full_env = {
            **os.environ,
            "ATB_OUTPUT_DIR": str(tmp_path / "outputs"),
            "ATB_MULTIRUN_DIR": str(tmp_path / "multirun"),
            **(env or {}),
        }
        full_env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(__file__).parent), full_env.get("PYTHONPATH", "")]
        )
        extra = [f"db.url=sqlite:///{tmp_path / 'atb.db'}"] if db and module == "atb" else []
        return subprocess.run(
            [sys.executable, "-m", module, *args, *extra],
            capture_output=True, text=True, timeout=timeout, env=full_env, cwd=tmp_path,
        )  # fmt: skip

    return run
