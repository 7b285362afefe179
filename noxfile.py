"""Developer sessions. They run in the current environment (`pip install -e '.[dev]'`):
one install, no per-session virtualenv to rebuild, the same interpreter CI uses."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["tests"]

SOURCES = ["atb", "panels", "tests", "noxfile.py"]


@nox.session
def tests(session: nox.Session) -> None:
    """The default test run: unit, end-to-end and browser tests; benchmarks excluded. Two
    xdist workers: most e2e tests wait on subprocesses and servers, so the whole run takes
    about half the serial time on two cores (~8 min here)."""
    session.run("pytest", "-p", "no:cacheprovider", "-n", "2", *session.posargs)


# What `unit` leaves out: anything needing a PostgreSQL cluster, Chromium, Ray, the health
# server's own process or a subprocess run of the CLI. It runs in under a minute here.
UNIT_MARKERS = "not postgres and not browser and not e2e and not slow"


@nox.session
def unit(session: nox.Session) -> None:
    """The fast inner loop: no PostgreSQL, browser or Ray; two workers."""
    session.run("pytest", "-p", "no:cacheprovider", "-m", UNIT_MARKERS, "-n", "2", *session.posargs)


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
