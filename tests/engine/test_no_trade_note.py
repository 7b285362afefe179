"""The summary explains a run whose signals were all sized to zero."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import numpy as np

from atb.engine.backtest import no_trade_note
from atb.engine.decision import DecisionRecord
from atb.engine.decision_log import DecisionLog

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def decision(size: float, reason: str | None) -> DecisionRecord:
    return DecisionRecord(0, T0, 1, 0.1, "skip" if size == 0 else "enter", size, reason, 100.0)


def result(trades: list[Any], decisions: list[DecisionRecord]) -> Any:
    log = DecisionLog(np.array([int(T0.timestamp() * 1e9)]))
    for d in decisions:
        log.append(d)
    return SimpleNamespace(trades=trades, decisions=log)


def test_names_the_most_common_reason() -> None:
    low = "confidence 0.00 < min_confidence 0.3"
    note = no_trade_note(result([], [decision(0, low), decision(0, low), decision(0, "other")]))
    assert "No trades: 3 signals, 3 sized to zero" in note
    assert f"(2x): {low}" in note


def test_silent_when_there_are_trades_or_no_signals() -> None:
    assert no_trade_note(result([object()], [decision(0, "x")])) == ""
    assert no_trade_note(result([], [])) == ""
