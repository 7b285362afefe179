"""Paper/live sessions against the test exchange (real ccxt over HTTP) and the replay.

Sessions run as real commands (`python -m atb mode=... live.max_iterations=N`) in a
subprocess with a temp SQLite DB and output dir; ccxt is pointed at FakeBinance with
`exchange.base_url=<fake url>` and the fake's keys in BINANCE_API_KEY / _SECRET.
"""

from __future__ import annotations

import math
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from atb_testkit import Candle, FakeBinance

HOUR = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z
FAST, SLOW = 3, 8
SMA = ["strategy=sma_crossover", f"strategy.fast={FAST}", f"strategy.slow={SLOW}"]
QUICK = [
    "health=off",
    "live.check_interval=0.05",
    "live.cooldown=0.02",
    # FakeBinance's candles are from 2024: only the stale tests judge candle age.
    "live.stale_after=1e12",
    "live.stale_polls=1000",
    "exchange.retry.initial=0.02",
    "exchange.retry.max=0.2",
    "exchange.timeout=2",
]


def zigzag_candles(n: int = 400, leg: int = 12, seed_price: float = 30_000.0) -> list[Candle]:
    """Legs of `leg` bars down then up: an SMA(3/8) crossover every few bars."""
    out: list[Candle] = []
    close = seed_price
    for i in range(n):
        drift = 0.004 if (i // leg) % 2 else -0.004
        open_ = close
        close = round(open_ * math.exp(drift), 2)
        high = round(max(open_, close) * 1.001, 2)
        low = round(min(open_, close) * 0.999, 2)
        out.append(Candle(T0 + i * HOUR, open_, high, low, close, 100.0))
    return out


def first_buy_bar(candles: list[Candle], after: int = SLOW + 1) -> int:
    """Index of the first bar where SMA(FAST) crosses strictly above SMA(SLOW)."""
    close = pd.Series([c.close for c in candles])
    fast, slow = close.rolling(FAST).mean(), close.rolling(SLOW).mean()
    for i in range(after, len(candles)):
        if fast[i - 1] < slow[i - 1] and fast[i] > slow[i]:
            return i
    raise AssertionError("no crossover")


def prepare_db(path: Path) -> str:
    """A temp SQLite database; the db node migrates it on first start."""
    return f"sqlite:///{path}"


@dataclass
class Session:
    tmp: Path
    db_path: Path
    db_url: str

    def run(
        self,
        *args: str,
        env: dict[str, str] | None = None,
        timeout: float = 60,
        module: str = "atb",
        argv0: list[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        full_env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("BINANCE_", "PORT", "HEALTH_CHECK_PORT", "ATB_DB"))
        }
        full_env.update({"ATB_OUTPUT_DIR": str(self.tmp / "outputs"), "LOG_LEVEL": "INFO",
                         **(env or {})})  # fmt: skip
        cmd = argv0 or [sys.executable, "-m", module]
        return subprocess.run(
            [*cmd, *args, f"db.url={self.db_url}"],
            capture_output=True, text=True, timeout=timeout, env=full_env, cwd=self.tmp,
        )  # fmt: skip

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.db_path) as conn:
            return conn.execute(sql, params).fetchall()

    def events(self, name: str) -> list[tuple[Any, ...]]:
        return self.query(
            "select severity, message, details from system_events where name = ?", name
        )


@pytest.fixture
def session(tmp_path: Path) -> Session:
    db_path = tmp_path / "atb.db"
    return Session(tmp_path, db_path, prepare_db(db_path))


def fake_env(fake: FakeBinance) -> dict[str, str]:
    return {"BINANCE_API_KEY": fake.api_key, "BINANCE_API_SECRET": fake.api_secret}


def fake_args(fake: FakeBinance) -> list[str]:
    return [f"exchange.base_url={fake.url}"]


class Advancer:
    """Reveals one more candle after each klines request: poll i sees exactly bar i."""

    def __init__(self, fake: FakeBinance) -> None:
        self.fake = fake
        self.enabled = True
        self._stop = threading.Event()
        self._seen = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.002):
            n = len(self.fake.requests_to("/api/v3/klines"))
            if n > self._seen:
                self._seen = n
                if self.enabled:
                    self.fake.advance(1)

    def __enter__(self) -> Advancer:
        self._seen = len(self.fake.requests_to("/api/v3/klines"))
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance(
        candles=zigzag_candles(), warmup=SLOW + 30, balances={"USDT": 10_000.0, "BTC": 0.0}
    ) as srv:
        yield srv


Run = Callable[..., subprocess.CompletedProcess[str]]
