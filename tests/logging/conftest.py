from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from atb.logging.context import clear_context, clear_run_context
from atb.logging.redaction import Redactor, set_redactor
from atb.logging.setup import configure_logging, flush, reset_logging


@pytest.fixture(autouse=True)
def _clean_logging() -> Iterator[None]:
    clear_context()
    clear_run_context()
    yield
    reset_logging()
    clear_context()
    clear_run_context()
    set_redactor(Redactor())


class Outputs:
    """Every sink at once: console text (stderr), JSON (stdout), JSON file, text file."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.stdout = io.StringIO()
        self.stderr = io.StringIO()
        self.records: list[dict[str, Any]] = []

    def config(self, level: str = "DEBUG", **extra: Any) -> dict[str, Any]:
        return {
            "level": level,
            "background": False,
            "sinks": [
                {"kind": "console", "stream": "stderr", "colorize": False},
                {"kind": "json", "stream": "stdout"},
                {"kind": "file", "path": str(self.tmp / "atb.jsonl")},
                {"kind": "file", "path": str(self.tmp / "atb.txt"), "format": "text"},
            ],
            **extra,
        }

    def configure(self, redactor: Redactor | None = None, **extra: Any) -> None:
        configure_logging(self.config(**extra), redactor=redactor, env={})

    def listen(self) -> None:
        from atb.logging.hooks import add_record_listener

        self._remove = add_record_listener(self.records.append)

    def reset(self) -> None:
        self.stdout.seek(0)
        self.stdout.truncate()
        self.stderr.seek(0)
        self.stderr.truncate()
        self.records.clear()
        for name in ("atb.jsonl", "atb.txt"):
            (self.tmp / name).write_text("")

    @contextlib.contextmanager
    def capture(self) -> Iterator[Outputs]:
        with contextlib.redirect_stdout(self.stdout), contextlib.redirect_stderr(self.stderr):
            yield self
            flush()

    def texts(self) -> dict[str, str]:
        return {
            "console": self.stderr.getvalue(),
            "json": self.stdout.getvalue(),
            "file": (self.tmp / "atb.jsonl").read_text(),
            "text_file": (self.tmp / "atb.txt").read_text(),
            "listener": json.dumps(self.records, default=str),
        }

    def json_lines(self) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.stdout.getvalue().splitlines() if line]
        file_lines = [
            json.loads(line) for line in (self.tmp / "atb.jsonl").read_text().splitlines()
        ]
        assert len(lines) == len(file_lines)
        return lines


@pytest.fixture
def outputs(tmp_path: Path) -> Outputs:
    return Outputs(tmp_path)
