"""`python -m atb` skips the interpreter's teardown but not what a normal exit promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import atexit, sys, threading, time
from pathlib import Path
from atb.runtime.quick_exit import run_then_exit

out = Path(sys.argv[1])
outcome = sys.argv[2]

def main():
    atexit.register(lambda: (out / "atexit").write_text("ran"))
    def late():
        time.sleep(0.3)
        (out / "thread").write_text("joined")
    threading.Thread(target=late).start()
    print("buffered output", end="")
    if outcome == "int":
        raise SystemExit(3)
    if outcome == "text":
        sys.exit("atb: error: something, said once")
    if outcome == "error":
        raise RuntimeError("boom")

run_then_exit(main)
"""


@pytest.mark.parametrize(
    ("outcome", "status", "stderr"),
    [
        ("ok", 0, ""),
        pytest.param("int", 3, "", marks=pytest.mark.slow),
        pytest.param("text", 1, "atb: error: something, said once\n", marks=pytest.mark.slow),
    ],
)
def test_status_output_threads_and_atexit_as_a_normal_exit(
    tmp_path: Path, outcome: str, status: int, stderr: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), outcome], capture_output=True, text=True
    )
    assert proc.returncode == status
    assert proc.stdout == "buffered output"
    assert proc.stderr == stderr
    assert (tmp_path / "thread").read_text() == "joined"  # non-daemon threads are waited for
    assert (tmp_path / "atexit").read_text() == "ran"  # logging.shutdown and friends run


@pytest.mark.slow
def test_an_unexpected_error_keeps_python_s_own_report(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), "error"], capture_output=True, text=True
    )
    assert proc.returncode == 1 and "RuntimeError: boom" in proc.stderr
    assert (tmp_path / "atexit").read_text() == "ran"
