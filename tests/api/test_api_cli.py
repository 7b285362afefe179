"""`atb api schema`: the published JSON Schemas, and one line for a bad name."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from atb.api.schemas import SCHEMAS

# Each test starts a process of its own (the health server, a session or the CLI): e2e.
pytestmark = pytest.mark.e2e


def atb(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "atb.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_schema_of_one_answer_and_of_all() -> None:
    one = atb("api", "schema", "trades")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout) == SCHEMAS["trades"].model_json_schema()
    every = atb("api", "schema")
    assert every.returncode == 0
    assert set(json.loads(every.stdout)) == set(SCHEMAS)


def test_unknown_schema_is_one_line_and_exit_2() -> None:
    bad = atb("api", "schema", "nope")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "no schema 'nope'" in bad.stderr
    assert "Traceback" not in bad.stderr
