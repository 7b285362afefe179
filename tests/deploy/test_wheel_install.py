"""The wheel, not the checkout: build it, install it without -e into a fresh venv (no
system site-packages), and from an empty directory run what a new user runs first.

Slow (a full dependency install); .ci/run runs it inside the README's test command.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from deploy_helpers import ROOT, Proc, free_port, http_get

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "constraints.txt")
TREES = ("atb", "conf", "panels")


@dataclass
class Installed:
    venv: Path
    wheel: Path
    home: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "HOST", "PORT", "ENV")
            and not k.startswith(("ATB_", "HYDRA_"))
        }
        env["PATH"] = f"{self.bin}{os.pathsep}{env.get('PATH', '')}"
        env["HOME"] = str(self.home)
        env.update(extra)
        return env

    def run(self, *cmd: str, cwd: Path, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        exe = str(self.bin / cmd[0]) if (self.bin / cmd[0]).exists() else cmd[0]
        return subprocess.run(
            [exe, *cmd[1:]], cwd=cwd, env=self.env(), capture_output=True, text=True,
            timeout=timeout,
        )  # fmt: skip


def _copy_sources(dest: Path) -> None:
    """Build from a copy: an in-tree build would leave build/ and *.egg-info in the checkout."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in SOURCES:
        shutil.copy2(ROOT / name, dest / name)
    for name in TREES:
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel")
    src, dist, env_dir, home = base / "src", base / "dist", base / "venv", base / "home"
    src.mkdir()
    home.mkdir()
    _copy_sources(src)
    pip_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        capture_output=True, text=True, env=pip_env, timeout=600,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = dist.glob("atb-*.whl")
    venv.EnvBuilder(with_pip=True, system_site_packages=False, clear=True).create(env_dir)
    install = subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q",
         "-c", str(ROOT / "constraints.txt"), f"{wheel}[postgres]"],
        capture_output=True, text=True, env=pip_env, timeout=1800,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-3000:]
    yield Installed(env_dir, wheel, home)


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_wheel_carries_config_and_dashboards_but_no_test_code(installed: Installed) -> None:
    import zipfile

    names = zipfile.ZipFile(installed.wheel).namelist()
    assert "atb/conf/config.yaml" in names
    assert "atb/conf/strategy/ml_basic.yaml" in names
    assert {"atb/panels/monitoring.py", "atb/panels/backtesting.py"} <= set(names)
    assert not [n for n in names if "testkit" in n or n.startswith(("atb/testing/", "tests/"))]


def test_runs_from_the_venv_not_the_checkout(installed: Installed, empty: Path) -> None:
    proc = installed.run("python", "-c", "import atb, sys; print(atb.__file__)", cwd=empty)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(str(installed.venv)), proc.stdout
    assert installed.run("python", "-c", "import atb_testkit", cwd=empty).returncode == 1


def test_version_help_and_dashboards_list(installed: Installed, empty: Path) -> None:
    version = installed.run("python", "-m", "atb", "--version", cwd=empty)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("atb 0.1.0 (Hydra 1.3"), version.stdout
    assert installed.run("atb", "--version", cwd=empty).stdout == version.stdout

    helped = installed.run("python", "-m", "atb", "--help", cwd=empty)
    assert helped.returncode == 0, helped.stderr
    assert "strategy" in helped.stdout and "ml_basic" in helped.stdout

    cli_help = installed.run("atb", "--help", cwd=empty)
    assert cli_help.returncode == 0 and "live-health" in cli_help.stdout

    listed = installed.run("atb", "dashboards", "list", cwd=empty)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.strip().splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["backtesting", "ok"], ["market_prediction", "ok"], ["monitoring", "ok"],
    ]  # fmt: skip
    assert list(empty.iterdir()) == []


def test_default_job_and_heartbeat(installed: Installed, empty: Path) -> None:
    job = installed.run("python", "-m", "atb", cwd=empty, timeout=600)
    assert job.returncode == 0, job.stderr[-3000:]
    assert "backtest_end" in job.stdout + job.stderr
    assert (empty / "atb.db").exists()
    beat = installed.run("atb", "tests", "heartbeat", cwd=empty)
    assert beat.returncode == 0, beat.stderr[-3000:]
    assert "Heartbeat recorded" in beat.stdout


def test_panel_serve_of_the_installed_dashboard(installed: Installed, empty: Path) -> None:
    path = installed.run("atb", "dashboards", "path", "monitoring", cwd=empty)
    assert path.returncode == 0, path.stderr
    script = Path(path.stdout.strip())
    assert script.is_file() and str(script).startswith(str(installed.venv))
    port = free_port()
    proc = Proc(
        [str(installed.bin / "panel"), "serve", str(script), "--port", str(port),
         "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}"],
        installed.env(), empty, empty.parent / "panel.log",
    )  # fmt: skip
    try:
        code = proc.wait_until(
            lambda: http_get(port, "/monitoring", timeout=60)[0] == 200, 180, "panel serve"
        )
        assert code
        body = http_get(port, "/monitoring", timeout=60)[2]
        assert b"atb" in body
    finally:
        proc.stop()
    assert "Traceback" not in proc.output(), proc.output()[-3000:]


def test_own_strategy_with_config_dir(installed: Installed, tmp_path: Path) -> None:
    example = tmp_path / "own_strategy"
    shutil.copytree(ROOT / "docs" / "examples" / "own_strategy", example)
    for args in (
        ("--config-dir", "myconf", "strategy=momentum", "strategy.lookback=48"),
        ("hydra.searchpath=[file://myconf]", "strategy=momentum"),
    ):
        proc = installed.run("python", "-m", "atb", *args, cwd=example, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "strategy=momentum" in proc.stdout + proc.stderr
