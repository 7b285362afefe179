"""R1 (issue 14): an exchange that echoes credentials in its rejection body.

A live session against the test exchange whose order rejections quote the API key, a
`Bearer` header and a URL password: none of them may reach orders.note, the events, the
console or any file the run writes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from atb_testkit import FakeBinance
from live_helpers import QUICK, SMA, Advancer, Session, fake_args, fake_env

pytestmark = pytest.mark.e2e

LIVE = ["mode=live", "live.i_understand_the_risks=true"]
BEARER = "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.T0ken9876"
URL_PW = "UrlPassw0rd-4242"


def _files_text(root: Path) -> str:
    return "\n".join(
        p.read_text(errors="replace") for p in root.rglob("*") if p.is_file() and p.suffix != ".db"
    )


def test_rejection_echoing_credentials_is_stored_redacted(
    session: Session, fake: FakeBinance
) -> None:
    echo = (
        f"Invalid API-key {fake.api_key}, IP, or permissions for action. "
        f"Authorization: Bearer {BEARER} via https://trader:{URL_PW}@proxy.example:8443/x"
    )
    fake.faults.reject_orders(code=-2010, msg=echo, times=4)
    with Advancer(fake):
        proc = session.run(
            *LIVE, *SMA, *QUICK, *fake_args(fake), "live.max_iterations=60", env=fake_env(fake)
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    notes = [n for (n,) in session.query("select note from orders where status='rejected'")]
    assert len(notes) >= 1, session.query("select status, note from orders")
    assert all("-2010" in n and "Invalid API-key" in n for n in notes), notes
    assert all("[REDACTED]" in n for n in notes)
    dumped = "\n".join(
        str(row)
        for table in ("orders", "system_events", "runs", "decisions")
        for row in session.query(f"select * from {table}")
    )
    outputs = proc.stdout + proc.stderr + _files_text(session.tmp / "outputs")
    for secret in (fake.api_key, fake.api_secret, BEARER, URL_PW):
        assert secret not in dumped, f"{secret!r} stored in the DB"
        assert secret not in outputs, f"{secret!r} printed or written"
