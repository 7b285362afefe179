"""Ship the top-level `conf/` and `panels/` inside the wheel as `atb/conf` and `atb/panels`.

They stay at the top of the repository (config groups beside the package they configure,
dashboards runnable with `panel serve panels/NAME.py`); everything else is in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
BUNDLED = ("conf", "panels")


class BuildWithResources(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the repository's own directories
        for name in BUNDLED:
            source = ROOT / name
            for path in sorted(source.rglob("*")):
                if not path.is_file() or "__pycache__" in path.parts or path.suffix == ".pyc":
                    continue
                target = Path(self.build_lib) / "atb" / name / path.relative_to(source)
                self.mkpath(str(target.parent))
                self.copy_file(str(path), str(target))


setup(cmdclass={"build_py": BuildWithResources})
