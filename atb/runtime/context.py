"""What every node learns about the run it belongs to."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from atb.runtime.probes import Probes


def new_run_id() -> str:
    return uuid.uuid4().hex


class EventJournal(Protocol):
    """What the run's event journal (atb.db.journal.Journal) offers other nodes."""

    def emit(self, event: Mapping[str, Any]) -> str: ...

    def state(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ExchangeTarget:
    """The run's exchange as other nodes may see it, without keys: what the health server's
    exchange check probes on a client of its own (the exchange node itself stays private)."""

    target: str
    id: str | None = None
    base_url: str | None = None
    sandbox: bool = False

    @classmethod
    def of(cls, section: Mapping[str, Any]) -> ExchangeTarget:
        """From the exchange node's validated settings (`_target_`, `id`, `base_url`, ...)."""
        ex_id, base_url = section.get("id"), section.get("base_url")
        return cls(
            target=str(section.get("_target_", "")),
            id=str(ex_id) if ex_id else None,
            base_url=str(base_url) if base_url else None,
            sandbox=bool(section.get("sandbox", False)),
        )


@dataclass
class RunContext:
    """Identity and shared signals of one run.

    `stop_event` is set on SIGINT/SIGTERM: long-running nodes poll it and finish their
    current iteration instead of being killed mid-write.
    """

    run_id: str = field(default_factory=new_run_id)
    mode: str = "backtest"
    symbol: str = "BTCUSDT"
    timeframe: str = "1h"
    strategy: str | None = None
    output_dir: Path | None = None
    overrides: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    """The resolved config with secrets redacted: safe to store and display."""
    secrets: frozenset[str] = field(default_factory=frozenset)
    sweep_id: str | None = None
    job_num: int | None = None
    config_sources: dict[str, list[str]] = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)
    journal: EventJournal | None = None
    """The run's event journal while it runs (set by the `journal` node): for nodes that
    journal events without listing it in `needs`."""

    probes: Probes = field(default_factory=Probes)
    """The run's published state (loop heartbeat, journal, alerts, data, exchange): the
    components that have it register here, the health server and alert rules read it."""
    exchange: ExchangeTarget | None = None
    """The run graph's exchange node, if any, as `ExchangeTarget`."""

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()
