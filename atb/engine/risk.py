"""Risk and sizing: turn a signal into an action and a size, or say why not.

Pure functions of (signal, current position, settings) so the backtest and the live loop
cannot disagree about what a signal means. Sizes are fractions of balance; the actual
quantity is fixed at fill time from the fill price (see decision.py), because the price the
order will get is not known when the signal is taken on a bar's close.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

from atb.engine.inputs import Signal
from atb.strategies.base import BUY, SELL

Action = Literal[
    "none",
    "open_long",
    "close_long",
    "reverse_to_long",
    "open_short",
    "close_short",
    "reverse_to_short",
]


# Reasons a signal decides "none" (the backtest also records them in bulk: signal_rows.py).
ALREADY_LONG = "already long"
ALREADY_SHORT = "already short"
SHORTS_DISABLED = "shorts disabled (allow_shorts=false)"
ZERO_SIZE = "signal size is 0"


@dataclass(frozen=True, slots=True)
class RiskSettings:
    allow_shorts: bool = False
    max_position: float = 1.0
    """Cap on one position, as a fraction of balance at entry."""
    position_size: float | None = None
    """When set, replaces the size the strategy asks for (still capped by max_position)."""


class Decision(NamedTuple):
    """What was done about a signal: recorded for every non-HOLD signal."""

    action: Action
    size: float
    reason: str | None = None

    @property
    def opens(self) -> int:
        """+1 / -1 when this decision opens a position on that side, else 0."""
        return OPENS.get(self.action, 0)

    @property
    def closes(self) -> bool:
        return self.action in CLOSES


# What each action does, as lookups: the decision path reads them once per signal.
OPENS: dict[str, int] = {
    "open_long": 1,
    "reverse_to_long": 1,
    "open_short": -1,
    "reverse_to_short": -1,
}
CLOSES = frozenset({"close_long", "close_short", "reverse_to_long", "reverse_to_short"})


def decide(signal: Signal, position_side: int, settings: RiskSettings) -> Decision:
    """Action for `signal` given the current position side (+1 long, -1 short, 0 flat)."""
    if signal.direction not in (BUY, SELL):
        return Decision("none", 0.0, "hold")
    wanted = settings.position_size if settings.position_size is not None else signal.size
    size = min(max(wanted, 0.0), settings.max_position)
    capped = wanted > settings.max_position
    note = f"capped at max_position={settings.max_position:g}" if capped else None
    zero_reason = signal.reason or ZERO_SIZE

    if signal.direction == BUY:
        if position_side > 0:
            return Decision("none", 0.0, ALREADY_LONG)
        if position_side < 0:
            if size <= 0:
                return Decision("close_short", 0.0, zero_reason)
            return Decision("reverse_to_long", size, note)
        if size <= 0:
            return Decision("none", 0.0, zero_reason)
        return Decision("open_long", size, note)

    # SELL
    if position_side < 0:
        return Decision("none", 0.0, ALREADY_SHORT)
    if position_side > 0:
        if not settings.allow_shorts:
            return Decision("close_long", 0.0, None)
        if size <= 0:
            return Decision("close_long", 0.0, zero_reason)
        return Decision("reverse_to_short", size, note)
    if not settings.allow_shorts:
        return Decision("none", 0.0, SHORTS_DISABLED)
    if size <= 0:
        return Decision("none", 0.0, zero_reason)
    return Decision("open_short", size, note)
