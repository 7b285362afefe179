from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from health_helpers import PROBES, CountingCheck

from atb.health import metrics


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts with no probes, no metric samples and no port env vars."""
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("HEALTH_CHECK_PORT", raising=False)
    PROBES.reset()
    metrics.reset_metrics()
    CountingCheck.runs.clear()
    CountingCheck.release.clear()
    yield
    CountingCheck.release.set()  # wake any deliberately hung check thread
    PROBES.reset()
