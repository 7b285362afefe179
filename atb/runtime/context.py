"""What every node learns about the run it belongs to."""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atb.runtime.probes import Probes


def new_run_id() -> str:
    return uuid.uuid4().hex


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
    probes: Probes = field(default_factory=Probes)
    """The run's published state (loop heartbeat, journal, alerts, data, exchange): the
    components that have it register here, the health server and alert rules read it."""

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()
