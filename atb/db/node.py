"""The `db` node: one SQLAlchemy engine for the run, sessions on demand."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

from pydantic import Field
from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session, sessionmaker

from atb.config.base import NodeConfig
from atb.runtime.context import RunContext
from atb.runtime.node import Node


class DatabaseConfig(NodeConfig):
    url: str = Field("sqlite:///atb.db", min_length=1)


class Database(Node[DatabaseConfig]):
    config_model: ClassVar[type[NodeConfig]] = DatabaseConfig

    def __init__(self, config: DatabaseConfig, ctx: RunContext, **needs: Any) -> None:
        super().__init__(config, ctx)
        self.url = config.url
        self.engine: Engine = create_engine(config.url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def start(self) -> None:
        from atb.db.models import Base

        Base.metadata.create_all(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        with self._sessions.begin() as session:
            yield session

    def stop(self) -> None:
        self.engine.dispose()
