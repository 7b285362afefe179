"""R5 (issue 14): third-party loggers that install their own console handlers.

`atb dashboards run` configures atb's logging and then imports panel, whose `panel`
logger comes with its own stderr handler and propagate=False; bokeh does the same when
its logging is set up. Their records must go through atb's pipeline (redacted, in atb's
format, journal hooks) and never straight to the console.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

import pytest

SECRET = "ThirdPartyKey-93kd81"
LIBS = ["panel.reactive", "bokeh.server", "tornado.access", "ccxt.base.exchange", "urllib3",
        "sqlalchemy.engine", "ray", "alembic.runtime.migration"]  # fmt: skip

SCRIPT = textwrap.dedent(
    """
    import logging, sys
    from atb.dashboards.cli import configure_logging
    configure_logging()          # what `atb dashboards run` does first
    import panel                 # installs panel's stderr handler, propagate=False
    from bokeh.util.logconfig import basicConfig
    basicConfig(level="INFO")    # bokeh's own handler on the `bokeh` logger
    for name in sys.argv[2:]:
        log = logging.getLogger(name)
        log.addHandler(logging.StreamHandler(sys.stderr))   # a library's own handler
        log.propagate = False
        log.warning("connect failed apiKey=%s (%s)", sys.argv[1], name)
    logging.getLogger("panel.reactive").error("callback failed for %s", sys.argv[1])
    """
)


@pytest.mark.e2e
def test_third_party_handlers_route_through_atb_pipeline() -> None:
    env = {**os.environ, "BINANCE_API_KEY": SECRET, "LOG_LEVEL": "INFO", "LOG_JSON": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, SECRET, *LIBS],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert SECRET not in out, out
    lines = [line for line in out.splitlines() if "connect failed" in line]
    # once per library (no duplicate from the library's own handler), in atb's format
    assert len(lines) == len(LIBS), out
    for name, line in zip(LIBS, lines, strict=True):
        assert "| WARNING  |" in line and name in line and "[REDACTED]" in line, line
    assert any("callback failed for [REDACTED]" in line for line in out.splitlines()), out


def test_handler_added_after_configure_is_reclaimed() -> None:
    from atb.logging import thirdparty
    from atb.logging.setup import InterceptHandler

    forward = InterceptHandler()
    thirdparty.install(forward)
    try:
        log = logging.getLogger("atb_test_lib.child")
        log.propagate = False
        own = logging.StreamHandler(sys.stderr)
        log.addHandler(own)
        assert own not in log.handlers and log.propagate is True
        kept = logging.FileHandler(os.devnull)  # a user's file handler is not console output
        log.addHandler(kept)
        assert kept in log.handlers
        log.removeHandler(kept)
        kept.close()
        assert logging.lastResort is forward
    finally:
        thirdparty.uninstall()
    assert logging.lastResort is not forward
