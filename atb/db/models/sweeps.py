"""The `sweeps` table: one row per multirun, holding its ranked summary."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from atb.db.models.base import Base, utcnow


class Sweep(Base):
    __tablename__ = "sweeps"

    id: Mapped[str] = mapped_column(Text, primary_key=True)  # the sweep dir, as runs.sweep_id
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    metric: Mapped[str] = mapped_column(String(64))
    descending: Mapped[bool] = mapped_column(Boolean, default=True)
    jobs: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    ranking: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
