"""Developer sessions. They run in the current environment (`pip install -e '.[dev]'`):
one install, no per-session virtualenv to rebuild, the same interpreter CI uses."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests"]

SOURCES = ["atb", "panels", "tests", "noxfile.py"]


@nox.session
def tests(session: nox.Session) -> None:
    """The default test run: unit, end-to-end and browser tests; benchmarks excluded."""
    session.run("pytest", "-p", "no:cacheprovider", *session.posargs)


@nox.session
def e2e(session: nox.Session) -> None:
    """Browser tests: the dashboards in Debian's Chromium driven by Playwright."""
    session.run("pytest", "-m", "browser", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.run("ruff", "check", *SOURCES)
    session.run("ruff", "format", "--check", *SOURCES)


@nox.session
def typecheck(session: nox.Session) -> None:
    session.run("mypy", "atb")


@nox.session
def bench(session: nox.Session) -> None:
    """Speed targets, each measured against its named baseline in the same process."""
    session.run(
        "pytest", "tests/benchmarks", "-s", "-p", "no:cacheprovider",
        "-o", "python_files=bench_*.py test_*.py", *session.posargs,
    )  # fmt: skip
