"""A backtest's decisions as columns: one per non-HOLD signal, without a Python object each.

On a million one-minute bars ml_basic makes ~850k signals and all but a few thousand decide
"none" (already long, shorts disabled). Holding those as 850k DecisionRecords with a
datetime each cost ~4 s and ~150 MB; here they stay numpy chunks in bar order, and records
are built only when someone iterates (tests, small runs). The decisions the path steps
through arrive one by one (`append`); the quiet ones in bulk (`extend_quiet`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

import numpy as np
import pandas as pd

from atb.engine.inputs import utc_datetime
from atb.engine.step import DecisionRecord


class DecisionSink(Protocol):
    def append(self, record: DecisionRecord, /) -> None: ...


class _Chunk(NamedTuple):
    bar: np.ndarray  # int64
    direction: np.ndarray  # float64
    confidence: np.ndarray  # float64, NaN = none
    action: list[str]
    size: np.ndarray
    reason: list[str | None]
    price: np.ndarray


def _records_chunk(records: Sequence[DecisionRecord]) -> _Chunk:
    bar, _time, direction, confidence, action, size, reason, price = zip(*records, strict=True)
    return _Chunk(
        np.asarray(bar, dtype=np.int64),
        np.asarray(direction, dtype=float),
        np.array([np.nan if c is None else c for c in confidence], dtype=float),
        list(action),
        np.asarray(size, dtype=float),
        list(reason),
        np.asarray(price, dtype=float),
    )


class DecisionLog:
    """Decisions in bar order; `stamps` are the run's bar times in epoch nanoseconds."""

    def __init__(self, stamps: np.ndarray) -> None:
        self._stamps = stamps
        self._chunks: list[_Chunk] = []
        self._stepped: list[DecisionRecord] = []
        # The list's own append (C): the decision path calls it once per stepped signal.
        self.append: Callable[[DecisionRecord], None] = self._stepped.append

    def extend_quiet(
        self,
        bars: np.ndarray,
        direction: np.ndarray,
        confidence: np.ndarray,
        price: np.ndarray,
        reason: str | list[str | None],
    ) -> None:
        """Signals on `bars` that decided "none" (size 0) for `reason` (one, or one each)."""
        n = len(bars)
        if not n:
            return
        self._flush()
        reasons: list[str | None] = [reason] * n if isinstance(reason, str) else reason
        self._chunks.append(
            _Chunk(
                np.asarray(bars, dtype=np.int64),
                np.asarray(direction, dtype=float),
                np.asarray(confidence, dtype=float),
                ["none"] * n,
                np.zeros(n),
                reasons,
                np.asarray(price, dtype=float),
            )
        )

    def _flush(self) -> None:
        if self._stepped:
            self._chunks.append(_records_chunk(self._stepped))
            self._stepped.clear()  # the same list: `append` is bound to it

    def _all(self) -> _Chunk:
        """Every decision as one chunk (merged once, then kept)."""
        self._flush()
        chunks = self._chunks
        if not chunks:
            no = np.empty(0)
            return _Chunk(np.empty(0, np.int64), no, no, [], no, [], no)
        if len(chunks) == 1:
            return chunks[0]
        merged = _Chunk(
            np.concatenate([c.bar for c in chunks]),
            np.concatenate([c.direction for c in chunks]),
            np.concatenate([c.confidence for c in chunks]),
            [a for c in chunks for a in c.action],
            np.concatenate([c.size for c in chunks]),
            [r for c in chunks for r in c.reason],
            np.concatenate([c.price for c in chunks]),
        )
        self._chunks = [merged]
        return merged

    def __len__(self) -> int:
        return sum(len(c.bar) for c in self._chunks) + len(self._stepped)

    def __bool__(self) -> bool:
        return len(self) > 0

    def __iter__(self) -> Iterator[DecisionRecord]:
        c = self._all()
        stamps = self._stamps
        for b, d, conf, action, size, reason, price in zip(
            c.bar.tolist(),
            c.direction.tolist(),
            c.confidence.tolist(),
            c.action,
            c.size.tolist(),
            c.reason,
            c.price.tolist(),
            strict=True,
        ):
            yield DecisionRecord(
                b,
                utc_datetime(int(stamps[b])),
                int(d),
                None if conf != conf else conf,
                action,
                size,
                reason,
                price,
            )

    def columns(self) -> dict[str, Any]:
        """The decisions series' columns (what `decisions` rows hold): numbers as float
        arrays (NaN where a confidence is missing), actions and reasons as text."""
        c = self._all()
        micros = self._stamps[c.bar] // 1000  # a bar's time as the path sees it (utc_datetime)
        return {
            "time": pd.DatetimeIndex(micros.astype("M8[us]")).tz_localize("UTC"),
            "signal": c.direction,
            "confidence": c.confidence,
            "action": c.action,
            "size": c.size,
            "reason": c.reason,
            "price": c.price,
        }

    def zero_size_reasons(self) -> Counter[str]:
        """How often each reason left a signal unsized (the no-trade note)."""
        c = self._all()
        zero = (c.size == 0).tolist()
        return Counter(r for r, z in zip(c.reason, zero, strict=True) if z and r)
