from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from atb_testkit import sample

from atb.dashboards.browser import chromium
from atb.dashboards.readonly import dispose_all


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, sample.Expected]]:
    """A database with known rows: (url, the values the dashboards should show)."""
    path = tmp_path_factory.mktemp("dash") / "atb.db"
    url = f"sqlite:///{path}"
    expected = sample.seed(url)
    yield url, expected
    dispose_all()


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    (tmp_path / "run1").mkdir()
    (tmp_path / "run1" / "trades.csv").write_text(
        "trade_no,side,qty,entry_time,entry_price,exit_time,exit_price,fees,pnl,return_pct,"
        "exit_reason,bars_held\n"
        "1,long,0.1,2024-01-01T00:00:00+00:00,100.0,2024-01-01T01:00:00+00:00,110.0,0.1,0.9,"
        "0.09,signal,1\n"
        "2,short,0.1,2024-01-01T02:00:00+00:00,110.0,2024-01-01T03:00:00+00:00,115.0,0.1,-0.6,"
        "-0.05,stop_loss,1\n"
    )
    return tmp_path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium through Playwright (one per test module)."""
    with chromium() as b:
        yield b
