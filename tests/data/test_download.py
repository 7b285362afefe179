"""`atb data download` against the Binance-compatible test exchange (real ccxt, no network):
paginated, resumable, validated, and a failure never leaves a complete-looking file."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from atb_testkit.fake_binance import Candle, FakeBinance, synthetic_candles

from atb.data.cli import command
from atb.data.loader import load_bars

START_MS = 1_672_531_200_000  # 2023-01-01T00:00:00Z
N = 1050
PAGE = 100


@pytest.fixture
def exchange() -> Iterator[FakeBinance]:
    candles = synthetic_candles(N, interval="1m", start_ms=START_MS)
    with FakeBinance(candles, interval="1m", warmup=N, klines_max_limit=PAGE) as server:
        yield server


def _run(server: FakeBinance, out: Path, *extra: str) -> int:
    argv = ["download", "--symbol", "BTC/USDT", "--timeframe", "1m", "--since", "2023-01-01",
            "--out", str(out), "--base-url", server.url, "--no-progress", *extra]  # fmt: skip
    return command("data", argv)


def _klines(server: FakeBinance) -> list[int]:
    return [int(r.params["startTime"]) for r in server.requests_to("/api/v3/klines")]


def test_paginated_download_is_the_exchanges_candles(
    exchange: FakeBinance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "data" / "BTCUSDT-1m.csv.gz"
    assert _run(exchange, out, "--page-limit", "1000") == 0
    bars = load_bars(out, "1m")
    assert len(bars) == N and bars.index[0] == pd.Timestamp("2023-01-01", tz="UTC")
    expected = synthetic_candles(N, interval="1m", start_ms=START_MS)
    assert bars["close"].tolist() == [c.close for c in expected]
    assert bars["volume"].tolist() == [c.volume for c in expected]
    # The server caps a page at 100 candles although 1000 were asked for: 11 pages.
    starts = _klines(exchange)
    assert len(starts) >= 11 and starts == sorted(starts)
    assert f"{N:,} bars" in capsys.readouterr().out
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no .part left behind


def test_rerun_appends_only_what_is_missing(exchange: FakeBinance, tmp_path: Path) -> None:
    out = tmp_path / "BTCUSDT-1m.csv"
    assert _run(exchange, out, "--until", "2023-01-01T05:00:00") == 0
    assert len(load_bars(out, "1m")) == 300
    exchange.clear_request_log()
    assert _run(exchange, out) == 0
    bars = load_bars(out, "1m")
    assert len(bars) == N and not bars.index.duplicated().any()
    assert min(_klines(exchange)) == START_MS + 300 * 60_000  # nothing re-fetched


def test_a_failed_download_resumes_and_never_looks_complete(
    exchange: FakeBinance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import atb.data.download as download

    out = tmp_path / "BTCUSDT-1m.csv.gz"
    flush = download.FLUSH_ROWS
    download.FLUSH_ROWS = 200  # flush to the .part file every 2 pages
    try:
        exchange.fail_klines_after(5)
        assert _run(exchange, out) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert "re-run to resume" in err and "An unknown error occurred" in err
        assert not out.exists()
        part = tmp_path / "BTCUSDT-1m.part.csv.gz"
        assert len(load_bars(part, "1m")) == 500  # every page that arrived is kept
        exchange.clear_klines_fault()
        exchange.clear_request_log()
        assert _run(exchange, out) == 0
    finally:
        download.FLUSH_ROWS = flush
    assert len(load_bars(out, "1m")) == N and not part.exists()
    assert min(_klines(exchange)) == START_MS + 500 * 60_000
    assert "resumed from" in capsys.readouterr().out


def test_rate_limit_answers_are_retried(exchange: FakeBinance, tmp_path: Path) -> None:
    exchange.faults.add("http_429", path="/api/v3/klines", times=1, retry_after=0)
    out = tmp_path / "x.csv"
    assert _run(exchange, out, "--until", "2023-01-01T01:00:00") == 0
    assert len(load_bars(out, "1m")) == 60
    assert [r.status for r in exchange.requests_to("/api/v3/klines")][:2] == [429, 200]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--symbol", "ETH/USDT"], "binance has no market 'ETH/USDT'"),
        (["--exchange", "nope"], "unknown exchange 'nope'"),
        (["--timeframe", "7m"], "binance has no '7m' candles"),
        (["--timeframe", "abc"], "--timeframe: unknown timeframe 'abc'"),
        (["--since", "someday"], "'someday' is not a date/time"),
        (["--until", "2022-01-01"], "--until must be after --since"),
        (["--out", "x.parquet"], "must end in .csv or .csv.gz"),
    ],
)
def test_bad_requests_are_one_line_and_write_nothing(
    exchange: FakeBinance,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    out = tmp_path / "out.csv"
    rc = _run(exchange, out, *args)
    err = capsys.readouterr().err
    assert rc != 0 and message in err and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []


def test_bad_candles_from_the_exchange_stop_the_download(tmp_path: Path) -> None:
    candles = synthetic_candles(300, interval="1m", start_ms=START_MS)
    c = candles[150]
    candles[150] = Candle(c.timestamp, c.open, c.low - 1, c.low, c.close, c.volume)  # high < low
    out = tmp_path / "x.csv"
    with FakeBinance(candles, interval="1m", warmup=300, klines_max_limit=PAGE) as server:
        assert _run(server, out) == 1
    assert not out.exists()


def test_a_corrupt_existing_output_is_left_alone(
    exchange: FakeBinance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "x.csv"
    out.write_text("timestamp,open,high,low,close,volume\nnot-a-time,1,1,1,1,1\n")
    before = out.read_bytes()
    assert _run(exchange, out) == 1
    assert "existing" in capsys.readouterr().err and out.read_bytes() == before


@pytest.mark.e2e
def test_atb_data_download_command(exchange: FakeBinance, tmp_path: Path) -> None:
    out = tmp_path / "BTCUSDT-1m.csv.gz"
    cmd = [sys.executable, "-m", "atb.cli", "data", "download", "--exchange", "binance",
           "--symbol", "BTC/USDT", "--timeframe", "1m", "--since", "2023-01-01",
           "--until", "2023-01-01T02:00:00Z", "--out", str(out),
           "--base-url", exchange.url]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"{out}: 120 bars 2023-01-01 00:00 -> 2023-01-01 01:59 UTC" in proc.stdout
    unknown = subprocess.run([*cmd[:-2], "--base-url", exchange.url, "--symbol", "NOPE/USDT"],
                             capture_output=True, text=True, timeout=120)  # fmt: skip
    assert unknown.returncode == 1 and "Traceback" not in unknown.stderr
    assert unknown.stderr.strip() == "atb data download: binance has no market 'NOPE/USDT'"
