"""`system_events`: one row per structured event, WARNING/ERROR record and alert.

Rows arrive through the journal (atb/db/journal/), never from the trading loop directly.
`event_uuid` is unique so a replayed batch (after a spill or a retry) lands exactly once.
`session_id` is deliberately not a foreign key: events are journaled before, during and
after the run row exists, and from processes (heartbeat, alerts) that have no run at all.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from atb.db.models.base import Base, utcnow

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# JSONB on PostgreSQL so dashboards can filter on details keys with an index later.
Json = JSON().with_variant(JSONB(), "postgresql")


class EventType(StrEnum):
    """`system_events.event_type` values (the seed's SystemEvent types plus the emitters').

    Stored as plain strings, not a database enum: a new type is a code change only,
    not a migration that has to lock the table.
    """

    ENGINE_START = "ENGINE_START"
    ENGINE_STOP = "ENGINE_STOP"
    STRATEGY_CHANGE = "STRATEGY_CHANGE"
    MODEL_UPDATE = "MODEL_UPDATE"
    ERROR = "ERROR"
    WARNING = "WARNING"
    ALERT = "ALERT"
    BALANCE_ADJUSTMENT = "BALANCE_ADJUSTMENT"
    TEST = "TEST"
    # The structured emitters' families (atb.logging.events: log_engine_event, ...).
    ENGINE = "ENGINE"
    ORDER = "ORDER"
    RISK = "RISK"
    DATA = "DATA"
    DECISION = "DECISION"
    DB = "DB"
    # A record with no event family below WARNING (only emit() callers produce these).
    INFO = "INFO"


class Severity(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"
    CRITICAL = "CRITICAL"


class SystemEvent(Base):
    __tablename__ = "system_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    event_uuid: Mapped[str] = mapped_column(String(36), unique=True)
    timestamp: Mapped[datetime] = mapped_column(default=utcnow)
    event_type: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16), default=Severity.INFO.value)
    message: Mapped[str] = mapped_column(Text, default="")
    # The emitter's event name, e.g. "order_rejected", "engine_start"; null for plain records.
    name: Mapped[str | None] = mapped_column(String(64))
    logger: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any] | None] = mapped_column(Json)
    context: Mapped[dict[str, Any] | None] = mapped_column(Json)
    component: Mapped[str | None] = mapped_column(String(64))
    strategy: Mapped[str | None] = mapped_column(String(64))
    symbol: Mapped[str | None] = mapped_column(String(32))
    error_code: Mapped[str | None] = mapped_column(String(64))
    stack_trace: Mapped[str | None] = mapped_column(Text)
    alert_sent: Mapped[bool] = mapped_column(Boolean, default=False)
    alert_method: Mapped[str | None] = mapped_column(String(32))
    session_id: Mapped[str | None] = mapped_column(String(64))

    # The dashboards' queries: one session's events over time (atb/dashboards/monitoring)
    # and recent events across sessions (by time); `id > n` polling uses the primary key.
    # Every index is paid for on each journal insert (the table is write-heavy), so filters
    # on severity / event_type run within a session's rows instead of on their own index
    # (migration 0003 dropped those two: -20 % insert CPU).
    __table_args__ = (
        Index("ix_system_events_timestamp", "timestamp"),
        Index("ix_system_events_session_id_timestamp", "session_id", "timestamp"),
    )
