"""What the decision path is handed each bar: the closed candle and the strategy's signal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import repeat
from typing import NamedTuple

import numpy as np

from atb.strategies.base import HOLD, SignalFrame

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utc_datetime(ns: int) -> datetime:
    """Epoch nanoseconds -> aware datetime (microsecond precision), ~10x cheaper than
    indexing a DatetimeIndex, which matters once per stepped bar."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


def bars_at(ohlcv: np.ndarray, stamps: np.ndarray, rows: np.ndarray) -> dict[int, Bar]:
    """The Bars of the given rows (OHLCV columns, epoch-ns stamps), built in one pass for
    the bars a backtest will almost surely step: its signals and the bars after them.

    numpy turns the stamps into timedeltas from the epoch in C, and adding each to the
    aware epoch is `utc_datetime`'s own sum, mapped without a Python frame per bar: the
    times are exactly its (microsecond precision)."""
    offsets = (stamps[rows] // 1000).astype("m8[us]").tolist()
    times = map(_EPOCH.__add__, offsets)
    numbers = ohlcv[rows].T.tolist()
    index = rows.tolist()
    # zip builds each row's tuple in C; tuple.__new__ makes it a Bar without a Python frame
    # (repeat() rather than partial(): a third cheaper per call)
    bars = map(tuple.__new__, repeat(Bar), zip(index, times, *numbers, strict=True))
    return dict(zip(index, bars, strict=True))


class Bar(NamedTuple):
    """One closed candle. `index` is its position in the run (bar number), for records.

    A NamedTuple like Signal: read-only, and the backtest builds the bars it steps with
    tuple.__new__ mapped over columns, with no Python frame per bar.
    """

    index: int  # type: ignore[assignment]  # the bar number shadows tuple.index, unused here
    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0


class Signal(NamedTuple):
    """The strategy's call on one bar's close (SignalFrame row, as plain Python values)."""

    direction: int
    size: float = 1.0
    stop_loss: float | None = None
    take_profit: float | None = None
    confidence: float | None = None
    reason: str | None = None

    @property
    def is_hold(self) -> bool:
        return self.direction == HOLD


def signal_at(frame: SignalFrame, i: int) -> Signal:
    """Row `i` of a bulk SignalFrame; the live loop uses the last row of its window."""

    def opt(arr: np.ndarray | None) -> float | None:
        if arr is None:
            return None
        value = float(arr[i])
        return None if value != value else value  # NaN means "none"

    return Signal(
        direction=int(frame.direction[i]),
        size=float(frame.size[i]),
        stop_loss=opt(frame.stop_loss),
        take_profit=opt(frame.take_profit),
        confidence=opt(frame.confidence),
        reason=frame.reason[i] if frame.reason is not None else None,
    )
