"""Market data: the bundled file, period selection, gaps as events, bad files fail clearly."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from atb.config.validate import validate_config
from atb.data import node as data_node
from atb.data.loader import (
    BUNDLED_PATH,
    DataError,
    find_gaps,
    fingerprint,
    load_bars,
    select_period,
)
from atb.data.node import MarketData, MarketDataConfig
from atb.runtime.context import RunContext
from atb.runtime.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
HEADER = "timestamp,open,high,low,close,volume\n"
GOOD = [
    "2024-01-01T00:00:00Z,100,110,90,105,1",
    "2024-01-01T01:00:00Z,105,112,101,110,2",
    "2024-01-01T02:00:00Z,110,111,100,101,3",
]


def write(tmp_path: Path, rows: list[str], name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "\n".join(rows) + "\n")
    return path


def test_bundled_file_loads_all_bars() -> None:
    bars = load_bars()
    assert len(bars) == 18_000
    assert str(bars.index.tz) == "UTC"
    assert bars.index[0] == pd.Timestamp("2023-01-01T00:00Z")
    assert bars.index[-1] == pd.Timestamp("2025-01-20T00:00Z")
    assert fingerprint(bars) == fingerprint(load_bars())


def test_the_real_gap_is_found() -> None:
    (gap,) = find_gaps(load_bars(), "1h")
    assert gap.after == pd.Timestamp("2023-03-24T12:00Z")
    assert gap.before == pd.Timestamp("2023-03-24T14:00Z")
    assert gap.missing == 1


def test_gap_is_reported_as_data_event_not_filled(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(
        data_node, "log_data_event", lambda name, **fields: events.append((name, fields))
    )
    node = MarketData(
        MarketDataConfig(_target_="x", start="2023-03-24", end="2023-03-25"), RunContext()
    )
    node.start()
    assert len(node.bars) == 23  # 24 hours minus the missing candle: nothing invented
    gaps = [f for name, f in events if name == "data_gap"]
    assert gaps == [
        {
            "level": "WARNING",
            "symbol": "BTCUSDT",
            "timeframe": "1h",
            "after": "2023-03-24T12:00:00+00:00",
            "before": "2023-03-24T14:00:00+00:00",
            "missing_bars": 1,
            "file": str(BUNDLED_PATH),
        }
    ]
    assert [name for name, _ in events] == ["data_gap", "data_loaded"]


def test_period_is_half_open() -> None:
    bars = select_period(
        load_bars(), pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-01-02", tz="UTC")
    )
    assert len(bars) == 24 and bars.index[-1] == pd.Timestamp("2024-01-01T23:00Z")


def test_user_csv_and_gzip(tmp_path: Path) -> None:
    plain = write(tmp_path, GOOD)
    packed = tmp_path / "bars.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert fingerprint(load_bars(plain)) == fingerprint(load_bars(packed))
    node = MarketData(
        MarketDataConfig(_target_="x", path=plain, start="2024-01-01T01:00"), RunContext()
    )
    node.start()
    assert len(node.bars) == 2


@pytest.mark.parametrize(
    ("rows", "row", "problem"),
    [
        ([GOOD[0], GOOD[2], GOOD[1]], 3, "is earlier than the previous row's"),
        ([GOOD[0], GOOD[0]], 2, "duplicates the previous row's"),
        ([GOOD[0], "2024-01-01T01:00:00Z,105,100,101,100,1"], 2, "high < low"),
        ([GOOD[0], "2024-01-01T01:00:00Z,105,112,101,113,1"], 2, "close outside [low, high]"),
        ([GOOD[0], "2024-01-01T01:00:00Z,99,112,101,110,1"], 2, "open outside [low, high]"),
        ([GOOD[0], GOOD[1], "2024-01-01T02:00:00Z,,111,100,101,3"], 3, "open is NaN or empty"),
        ([GOOD[0], "2024-01-01T01:00:00Z,105,abc,101,110,2"], 2, "high 'abc' is not a number"),
        ([GOOD[0], "2024-01-01T01:00:00Z,105,112,101,NaN,2"], 2, "close is NaN or empty"),
        (["yesterday,100,110,90,105,1"], 1, "'yesterday' is not an ISO-8601 time"),
        ([GOOD[0], "2024-01-01T00:30:00Z,105,112,101,110,2"], 2, "timeframe is 1h"),
        ([GOOD[0], "2024-01-01T01:00:00Z,105,112,101,110,-2"], 2, "volume is negative"),
    ],
)
def test_bad_rows_name_file_row_and_problem(
    tmp_path: Path, rows: list[str], row: int, problem: str
) -> None:
    path = write(tmp_path, rows)
    with pytest.raises(DataError) as err:
        load_bars(path)
    message = str(err.value)
    assert message.startswith(f"{path}: row {row}: "), message
    assert problem in message
    assert err.value.row == row


def test_missing_file_and_columns(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_bars(tmp_path / "nope.csv")
    bad = tmp_path / "cols.csv"
    bad.write_text("time,open,high\n1,2,3\n")
    with pytest.raises(DataError, match=r"missing column\(s\) timestamp, low, close, volume"):
        load_bars(bad)


def test_empty_period_fails(tmp_path: Path) -> None:
    node = MarketData(
        MarketDataConfig(_target_="x", path=write(tmp_path, GOOD), start="2030-01-01"), RunContext()
    )
    with pytest.raises(DataError, match="no bars in the selected period"):
        node.start()


def _data_config(**data: Any) -> dict[str, Any]:
    return {
        "runner": {"main": "data"},
        "data": {"_target_": "atb.data.node.MarketData", **data},
    }


def test_config_checks_name_dotted_keys() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(_data_config(start="2024-02-01", end="2024-01-01"))
    assert err.value.problems == ["data.end: must be after data.start"]
    with pytest.raises(ConfigError) as err:
        validate_config(_data_config(symbol="ETHUSDT"))
    assert err.value.problems[0].startswith("data.symbol: the bundled data is BTCUSDT only")


@pytest.mark.e2e
def test_bad_file_exits_nonzero_naming_file_and_row(tmp_path: Path) -> None:
    path = write(tmp_path, [GOOD[0], "2024-01-01T01:00:00Z,105,100,101,100,1"])
    env = {**os.environ, "ATB_OUTPUT_DIR": str(tmp_path / "out")}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "atb",
            "strategy=sma_crossover",
            "data=csv",
            f"data.path={path}",
            f"db.url=sqlite:///{tmp_path / 'atb.db'}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "node 'data' failed to start" in proc.stderr
    assert f"{path}: row 2: high < low" in proc.stderr
