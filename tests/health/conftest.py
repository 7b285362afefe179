from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from health_helpers import PROBES, release_checks

from atb.health import metrics


@pytest.fixture(autouse=True)
def _fresh_state(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Each test starts with no probes, no metric samples and no port env vars."""
    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("HEALTH_CHECK_PORT", raising=False)
    check_dir = tmp_path / "checks"
    check_dir.mkdir()
    monkeypatch.setenv("ATB_TEST_CHECK_DIR", str(check_dir))
    PROBES.reset()
    metrics.reset_metrics()
    yield
    release_checks()  # wake any deliberately hung check thread
    PROBES.reset()
