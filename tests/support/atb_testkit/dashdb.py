"""A dashboard database made of real runs, for the dashboards' browser tests.

`build(directory)` runs real backtests through the runner into one SQLite file:

- a two-job sma_crossover sweep over `fast` (plus a third job recorded as failed, the way
  a job that raised is left in the registry),
- a zero-trade ml_basic run (confidence never reaches min_confidence: every signal is
  sized to zero, with its reason),
- a long run on a generated 100 000-bar 1m file,

and the sample sessions (sample.seed). `add_alerts` writes alert rows in the shape the
alert router journals (`alert_firing` / `alert_resolved`, delivery `failed:webhook`,
`suppressed`) for a session, so the monitoring page has a firing rule to show.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, insert, select

from atb.config.validate import validate_config
from atb.dashboards import tables as t
from atb.runtime.context import RunContext
from atb.runtime.runner import Runner
from atb_testkit import sample
from atb_testkit.bigdata import big_csv
from atb_testkit.outage import compose

SWEEP_ID = "multirun/2026-01-01/00-00-00"
LONG_BARS = 100_000
FAILED_ERROR = "ValueError: strategy.slow must be greater than strategy.fast"


@dataclass(frozen=True)
class DashDb:
    url: str
    sweep_runs: list[str]
    failed_run: str
    zero_trade_run: str
    long_run: str
    paper: str = sample.PAPER


def run_backtest(
    url: str, overrides: list[str], strategy: str = "sma_crossover", **ctx: Any
) -> str:
    cfg = compose([*overrides, f"db.url={url}", "health=off", "backtest.summary=false"])
    run_ctx = RunContext(mode="backtest", strategy=strategy, **ctx)
    Runner(validate_config(cfg), run_ctx).run()
    return str(run_ctx.run_id)


def build(directory: Path) -> DashDb:
    directory.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{directory / 'dash.db'}"
    expected = sample.seed(url)
    del expected
    sweep = [
        run_backtest(
            url, ["strategy=sma_crossover", f"strategy.fast={fast}"], sweep_id=SWEEP_ID, job_num=i
        )
        for i, fast in enumerate((5, 10))
    ]
    failed = _failed_job(url, sweep[0])
    zero = run_backtest(
        url,
        ["strategy=ml_basic", "strategy.confidence_scale=1", "strategy.min_confidence=0.9"],
        strategy="ml_basic",
    )
    csv = big_csv(LONG_BARS, directory)
    long_run = run_backtest(
        url,
        ["strategy=sma_crossover", "data=csv", f"data.path={csv}", "timeframe=1m"],
        timeframe="1m",
    )
    return DashDb(url, sweep, failed, zero, long_run)


def _failed_job(url: str, like: str) -> str:
    """A third sweep job that raised: its run row says failed, with the error."""
    engine = create_engine(url)
    with engine.begin() as conn:
        row = dict(conn.execute(select(t.runs).where(t.runs.c.id == like)).one()._mapping)
        row.update(
            id=str(uuid.uuid4()), status="failed", job_num=2, metrics=None, result_hash=None,
            error=FAILED_ERROR, parameters={**(row["parameters"] or {}), "fast": 60},
            started_at=row["started_at"] + timedelta(seconds=1),
        )  # fmt: skip
        conn.execute(insert(t.runs), [row])
    engine.dispose()
    return str(row["id"])


def alert_row(
    session: str, rule: str, status: str, method: str, at: datetime, count: int = 1
) -> dict[str, Any]:
    """One ALERT system_events row as atb.alerts.router journals it."""
    alert = {
        "id": uuid.uuid4().hex[:12], "rule": rule, "severity": "critical", "status": status,
        "summary": f"{rule} {status}", "first_seen": at.isoformat(),
        "last_seen": at.isoformat(), "count": count, "run_id": session,
    }  # fmt: skip
    return {
        "event_uuid": str(uuid.uuid4()),
        "timestamp": at,
        "event_type": "ALERT",
        "severity": "CRITICAL" if status == "firing" else "INFO",
        "message": f"[{status.upper()}] {rule}",
        "name": f"alert_{status}",
        "logger": "atb.alerts",
        "component": "alerts",
        "details": {"alert": alert, "delivery": {}},
        "context": {"run_id": session},
        "alert_sent": method == "webhook",
        "alert_method": method,
        "session_id": session,
    }


def add_alerts(url: str, session: str, now: datetime | None = None) -> None:
    """A storm (drawdown firing/resolved six times, still firing, last delivery failed)
    and a suppressed duplicate of a heartbeat rule that has since resolved."""
    now = now or datetime.now(UTC)
    rows = []
    for i in range(6):
        at = now - timedelta(minutes=30 - 4 * i)
        rows.append(alert_row(session, "max_drawdown", "firing", "webhook", at, count=i + 1))
        rows.append(
            alert_row(session, "max_drawdown", "resolved", "webhook", at + timedelta(minutes=2))
        )
    rows.append(
        alert_row(
            session, "max_drawdown", "firing", "failed:webhook", now - timedelta(minutes=3), 7
        )
    )
    rows.append(
        alert_row(session, "heartbeat_silence", "firing", "webhook", now - timedelta(minutes=20))
    )
    rows.append(
        alert_row(session, "heartbeat_silence", "firing", "suppressed", now - timedelta(minutes=19))
    )
    rows.append(
        alert_row(session, "heartbeat_silence", "resolved", "webhook", now - timedelta(minutes=15))
    )
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(insert(t.events), rows)
    engine.dispose()
