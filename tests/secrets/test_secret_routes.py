"""Issue 14, routes R2-R4: secrets given by env or on the command line never reach the files
a run writes, the run records, or the printed config. Real commands, real databases.

(R1 is tests/live/test_secret_echo.py, R5 tests/secrets/test_third_party_logs.py.)
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

pytestmark = pytest.mark.e2e

WEBHOOK_TOKEN = "Tok9vQ2xLp7Rz"
WEBHOOK = f"https://h.example/T01/B02/{WEBHOOK_TOKEN}"
CLI_KEY = "CliKey-58f1e9aa"
DB_PW = "S3cretPW-77"
SMA = ["strategy=sma_crossover", "health=off", "alerts=off"]


def run(
    tmp: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("BINANCE_", "ATB_", "ALERT_"))}
    full.update({"ATB_OUTPUT_DIR": str(tmp / "outputs"), "ATB_MULTIRUN_DIR": str(tmp / "multirun")})
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "atb", *args],
        capture_output=True, text=True, timeout=300, env=full, cwd=tmp,
    )  # fmt: skip


def written_text(root: Path) -> str:
    """Every text file under `root` (Hydra copies, summaries, spill files, exports)."""
    parts = []
    for path in root.rglob("*"):
        if path.is_file() and path.suffix not in {".db", ".db-wal", ".db-shm"}:
            parts.append(f"--- {path}\n{path.read_text(errors='replace')}")
    return "\n".join(parts)


def assert_absent(secret: str, where: str, text: str) -> None:
    assert secret not in text, f"{secret!r} in clear in {where}"


def test_r2_webhook_url_from_env_not_in_outputs_or_run_records(tmp_path: Path) -> None:
    """R2: ALERT_WEBHOOK_URL's token in outputs/*/.hydra/config.yaml and runs.config."""
    env = {"ALERT_WEBHOOK_URL": WEBHOOK}
    db = tmp_path / "b.db"
    single = run(tmp_path, *SMA[:2], f"db.url=sqlite:///{db}", env=env)
    assert single.returncode == 0, single.stderr[-2000:]
    sweep = run(tmp_path, "-m", *SMA[:2], "strategy.fast=5,10", f"db.url=sqlite:///{db}", env=env)
    assert sweep.returncode == 0, sweep.stderr[-2000:]
    config_files = list((tmp_path / "outputs").rglob("config.yaml"))
    config_files += list((tmp_path / "multirun").rglob("config.yaml"))
    assert len(config_files) >= 3  # one run + two sweep jobs
    for path in config_files:
        text = path.read_text()
        assert "alerts" in text and "[REDACTED]" in text, path
        assert_absent(WEBHOOK_TOKEN, str(path), text)
    for where, text in [
        ("outputs", written_text(tmp_path / "outputs")),
        ("multirun", written_text(tmp_path / "multirun")),
        ("console", single.stdout + single.stderr + sweep.stdout + sweep.stderr),
    ]:
        assert_absent(WEBHOOK_TOKEN, where, text)
    with sqlite3.connect(db) as conn:
        rows = conn.execute("select config, overrides from runs").fetchall()
        assert len(rows) == 3
        everything = "\n".join(str(r) for table in ("runs", "system_events", "sweeps")
                               for r in conn.execute(f"select * from {table}"))  # fmt: skip
    assert all("[REDACTED]" in config for config, _ in rows)
    assert all(json.loads(config)["exchange"]["api_secret"] is None for config, _ in rows)
    assert_absent(WEBHOOK_TOKEN, "runs/system_events/sweeps", everything)


@pytest.mark.postgres
def test_r3_multirun_yaml_body_on_postgres(tmp_path: Path, pg_cluster) -> None:  # type: ignore[no-untyped-def]
    """R3: a CLI API key and a PostgreSQL password in the body of multirun.yaml."""
    url = pg_cluster.create_database().replace("atb@", f"atb:{DB_PW}@")
    proc = run(
        tmp_path, "-m", *SMA, "strategy.fast=5,10", f"exchange.api_key={CLI_KEY}", f"db.url={url}"
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (multirun_yaml,) = (tmp_path / "multirun").rglob("multirun.yaml")
    assert list((tmp_path / "multirun").rglob("summary.csv"))  # the summary is checked too
    body = multirun_yaml.read_text()
    assert "api_key: '[REDACTED]'" in body and f"atb:[REDACTED]@127.0.0.1:{pg_cluster.port}" in body
    for secret in (CLI_KEY, DB_PW):
        assert_absent(secret, "multirun.yaml", body)
        assert_absent(secret, "multirun dir", written_text(tmp_path / "multirun"))
        assert_absent(secret, "console", proc.stdout + proc.stderr)
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            runs = conn.execute(sa.text("select config::text, overrides::text from runs")).all()
            events = conn.execute(sa.text("select message, details::text from system_events")).all()
    finally:
        engine.dispose()
    assert len(runs) == 2
    assert all(json.loads(config)["exchange"]["api_key"] == "[REDACTED]" for config, _ in runs)
    for secret in (CLI_KEY, DB_PW):
        assert_absent(secret, "runs", str(runs))
        assert_absent(secret, "system_events", str(events))


CFG_FLAGS = [
    ["--cfg", "job"],
    ["--cfg", "all"],
    ["--cfg", "all", "--resolve"],
    ["--cfg", "job", "--resolve"],
]


@pytest.mark.parametrize("flags", CFG_FLAGS)
def test_r4_printed_config_is_redacted(tmp_path: Path, flags: list[str]) -> None:
    """R4: --cfg job|all and --resolve print the DB password, CLI keys and the webhook URL."""
    proc = run(
        tmp_path,
        *flags,
        f"db.url=postgresql://u:{DB_PW}@127.0.0.1:1/x",
        f"exchange.api_key={CLI_KEY}",
        env={"ALERT_WEBHOOK_URL": WEBHOOK},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert "db:" in proc.stdout and "u:[REDACTED]@127.0.0.1:1/x" in proc.stdout
    for secret in (DB_PW, CLI_KEY, WEBHOOK_TOKEN):
        assert_absent(secret, " ".join(flags), out)
    import yaml

    printed = yaml.safe_load(proc.stdout)  # still a YAML document
    assert printed["exchange"]["api_key"] == "[REDACTED]"
    assert printed["exchange"]["api_secret"] is None  # an unset secret stays null
