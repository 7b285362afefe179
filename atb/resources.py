"""Where the shipped `conf/` and `panels/` directories are.

In the repository they sit at the top (`conf/`, `panels/`, next to `atb/`); a wheel carries
them as package data (`atb/conf`, `atb/panels`, copied by setup.py's build step). The
installed copy wins when present, so a wheel never reads a stray `conf/` that happens to lie
next to site-packages; a source checkout (or `pip install -e .`) reads the repository's.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
BUNDLED = ("conf", "panels")


def resource_dir(name: str) -> Path:
    """The directory of bundled resource `name` ("conf" or "panels")."""
    if name not in BUNDLED:
        raise ValueError(f"unknown resource directory {name!r} (known: {', '.join(BUNDLED)})")
    installed = PACKAGE_DIR / name
    if installed.is_dir():
        return installed
    return PACKAGE_DIR.parent / name


def config_dir() -> Path:
    return resource_dir("conf")


def panels_dir() -> Path:
    return resource_dir("panels")
