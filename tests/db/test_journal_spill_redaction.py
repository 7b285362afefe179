"""The journal's spill files are a boundary of their own (issue 14): whatever reaches them,
generated secrets never appear in clear, and the lines still replay as valid rows.

Records from atb.logging are redacted when made; `Journal.emit` callers (alerts, CLIs) are
not, so the spill writer redacts every line it writes (atb.db.journal.rows.redact_row)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from atb_testkit.secrets import leaks, registered, unregistered
from db_helpers import make_db
from hypothesis import HealthCheck, assume, given, settings
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from atb.db.journal import COLUMNS, Journal, JournalConfig, RowBuilder, row_from_json
from atb.db.journal.spill import SpillFile
from atb.db.journal.status import JournalStatus
from atb.logging.redaction import Redactor, get_redactor, set_redactor
from atb.runtime.context import RunContext

R = "[REDACTED]"


def _events(secret: str, token: str, token2: str) -> list[dict[str, Any]]:
    """What `Journal.emit` callers hand over as is: secrets in every text column."""
    note = f"binance -2015 Invalid API-key {secret} Authorization: Bearer {token}"
    return [
        {"event_type": "ALERT", "severity": "ERROR", "message": note,
         "details": {"url": f"https://hooks.slack.com/services/T0/B0/{token}",
                     "nested": {"api_secret": secret, "password": 12345678,
                                "items": [f"apiKey={token2}", secret]}},
         "component": f"alerts {secret}", "error_code": f"token={token2}",
         "stack_trace": f"Traceback ...\nValueError: postgresql://u:{token2}@db/x {secret}",
         "alert_method": f"webhook {secret}", "alert_sent": True},
        {"message": f"retry url=https://u:{token}@proxy/x", "level": "WARNING",
         "context": {"run_id": "r", "api_key": token, "note": secret},
         "fields": {"headers": {"Authorization": f"Bearer {token2}"}}},
    ]  # fmt: skip


def _journal(db: Any, tmp_path: Path, run_id: str, **settings: Any) -> Journal:
    config = JournalConfig.model_validate({
        "_target_": "atb.db.journal.Journal", "listen": False,
        "spill_path": str(tmp_path / "spill.jsonl"), "flush_interval": 0.02, **settings,
    })  # fmt: skip
    return Journal(config, RunContext(run_id=run_id), db=db)


def _wait(cond: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _check(text: str, secrets: tuple[str, ...]) -> None:
    assert R in text
    for value in secrets:
        assert not leaks(text, value), f"{value!r} in a spill file:\n{text}"
    for line in text.splitlines():
        row = dict(zip(COLUMNS, row_from_json(line), strict=True))
        for column in ("details", "context"):  # still JSON the database accepts
            if row[column] is not None:
                json.loads(row[column])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(secret=registered, token=unregistered, token2=unregistered)
def test_no_generated_secret_reaches_a_spill_file(
    tmp_path_factory: pytest.TempPathFactory, secret: str, token: str, token2: str
) -> None:
    assume(all(v not in R for v in (secret, token, token2)))
    assume(len({secret, token, token2}) == 3)
    tmp = tmp_path_factory.mktemp("spill")
    previous = get_redactor()
    set_redactor(Redactor(secrets=[secret]))
    try:
        spill = SpillFile(tmp / "spill.jsonl", JournalStatus(), ts_text=False)
        rows = [RowBuilder("run-1")(e) for e in _events(secret, token, token2)]
        spill.append(rows)  # the outage path
        spill.reject(rows)  # rows the database refused for their content
        spill.close(fsync=False)
    finally:
        set_redactor(previous)
    for path in (spill.path, spill.rejected_path):
        _check(path.read_text(encoding="utf-8"), (secret, token, token2))


def test_emitted_secrets_spilled_during_an_outage_are_replayed_redacted(
    sqlite_url: str, tmp_path: Path
) -> None:
    secret, token, token2 = "Gen3rated-Secret-9", "unregTok3n4567", "otherTok3n8910"
    previous = get_redactor()
    set_redactor(Redactor(secrets=[secret]))
    db = make_db(sqlite_url)
    db.start()
    try:
        journal = _journal(db, tmp_path, "run-1", retry_initial=0.05, retry_max=0.2)
        down = threading.Event()
        real = journal.writer.execute

        def execute(rows: list[Any]) -> None:
            if down.is_set():
                raise OperationalError("INSERT", {}, ConnectionRefusedError("server down"))
            real(rows)

        journal.writer.execute = execute  # type: ignore[method-assign]
        journal.start()
        down.set()
        events = _events(secret, token, token2)
        for event in events:
            journal.emit(event)
        _wait(lambda: journal.spill_pending == len(events))
        # (Retries rotate the file to spill.jsonl.replay-*: read every pending file.)
        spilled = "".join(p.read_text(encoding="utf-8") for p in journal.spill.pending_files())
        assert spilled.count("\n") == len(events)
        _check(spilled, (secret, token, token2))
        down.clear()
        journal.emit({"message": "after the outage"})
        _wait(lambda: journal.spill_pending == 0 and journal.status.written == len(events) + 1)
        journal.stop()
        with db.engine.connect() as conn:
            stored = [tuple(r) for r in conn.execute(text("SELECT * FROM system_events"))]
    finally:
        db.stop()
        set_redactor(previous)
    assert len(stored) == len(events) + 1  # nothing lost to redaction
    everything = "\n".join(map(str, stored))
    for value in (secret, token, token2):
        assert not leaks(everything, value)


def test_emitted_secrets_never_reach_the_database(db_url: str, tmp_path: Path) -> None:
    """`Journal.emit` callers (alerts, CLIs) hand over unredacted events, and on PostgreSQL
    the journal writes by COPY, past the engine's redaction hook: emit redacts them."""
    secret, token, token2 = "Gen3rated-Secret-7", "unregTok3n2345", "otherTok3n6789"
    previous = get_redactor()
    set_redactor(Redactor(secrets=[secret]))
    db = make_db(db_url)
    db.start()
    try:
        journal = _journal(db, tmp_path, "run-emit")
        journal.start()
        events = _events(secret, token, token2)
        for event in events:
            journal.emit(event)
        assert journal.flush(10)
        journal.stop()
        with db.engine.connect() as conn:
            stored = [tuple(r) for r in conn.execute(text("SELECT * FROM system_events"))]
    finally:
        db.stop()
        set_redactor(previous)
    assert len(stored) >= len(events)
    everything = "\n".join(map(str, stored))
    assert R in everything
    for value in (secret, token, token2):
        assert not leaks(everything, value), f"{value!r} stored in clear"
