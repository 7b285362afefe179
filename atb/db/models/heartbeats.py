"""The trading loop's heartbeat as other processes see it: one row per paper/live run.

The in-process heartbeat (`ctx.probes.heartbeat`) dies with the process; the monitoring
dashboard runs in another process and must tell a killed (`kill -9`) or hung loop from a
running one. `atb.engine.heartbeat_store.HeartbeatWriter` copies the heartbeat here from
its own thread (the loop never waits on it); the dashboard judges the row with the same
`atb.runtime.liveness.judge()` as `/health`. One row per run, updated in place: the table
does not grow with time.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from atb.db.models.base import Base, utcnow


class RunHeartbeat(Base):
    __tablename__ = "run_heartbeats"

    run_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True
    )
    pulse_at: Mapped[datetime | None] = mapped_column()
    """Wall clock (UTC) of the loop's last beat or failed iteration: liveness."""
    beat_at: Mapped[datetime | None] = mapped_column()
    """Wall clock (UTC) of the loop's last iteration that fetched data."""
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    interval_seconds: Mapped[float | None] = mapped_column(Float)
    extra_wait_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    iterations: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    stopped_at: Mapped[datetime | None] = mapped_column()
    stop_reason: Mapped[str | None] = mapped_column(String(32))
    pid: Mapped[int | None] = mapped_column(Integer)
    written_at: Mapped[datetime] = mapped_column(default=utcnow)
