"""The sink contract: what the logging core hands records to, and what a custom sink implements.

A sink receives already-redacted record dicts through `put()`. Custom sink: subclass `Sink`
(or `atb.logging.queued.QueuedSink` and implement `write_batch`), declare `config_model` (a
`SinkConfig` subclass) and name the class in `logging.sinks[]._target_`. The built-in ones
are in `atb.logging.sinks`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from atb.config.logging import SinkConfig


@dataclass(frozen=True)
class SinkSettings:
    """The logging node's settings every sink shares."""

    background: bool = True
    queue_size: int = 50_000
    flush_interval: float = 0.1
    run_id: str = ""
    mode: str = ""
    output_dir: str = "."


class Sink(ABC):
    """The sink contract: `put` must be cheap and must not raise."""

    config_model: ClassVar[type[SinkConfig]] = SinkConfig

    def __init__(self, config: SinkConfig, *, levelno: int, settings: SinkSettings) -> None:
        self.config = config
        self.levelno = levelno
        self.settings = settings
        self.name = config.name or type(self).__name__
        self.failed = False
        self.error: str | None = None
        self.dropped = 0

    @abstractmethod
    def put(self, record: dict[str, Any], critical: bool) -> None:
        """Each subclass implements this."""

    def flush(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Write out everything accepted so far."""

    def stop_background(self) -> None:
        """Flush and go on writing synchronously (after the run, records are rare)."""
        self.flush()

    def close(self) -> None:
        self.flush()

    def health(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "ok": not self.failed,
            "error": self.error,
            "dropped": self.dropped,
        }
