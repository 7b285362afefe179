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


_new = tuple.__new__  # a Decision without NamedTuple's Python-level __new__: once per signal

# The outcomes that do not depend on the signal's size.
NOT_A_SIDE = Decision("none", 0.0, "hold")
STAY_LONG = Decision("none", 0.0, ALREADY_LONG)
STAY_SHORT = Decision("none", 0.0, ALREADY_SHORT)
NO_SHORTS = Decision("none", 0.0, SHORTS_DISABLED)
CLOSE_LONG = Decision("close_long", 0.0, None)


def decide(signal: Signal, position_side: int, settings: RiskSettings) -> Decision:
    """Action for `signal` given the current position side (+1 long, -1 short, 0 flat).

    BUY: already long -> none; short -> reverse (close when sized to zero); flat -> open.
    SELL: already short -> none; long -> close, or reverse when shorts are allowed; flat ->
    open a short when allowed. A size of 0 (or below) opens nothing and says why.
    """
    direction = signal.direction
    if direction == BUY:
        if position_side > 0:
            return STAY_LONG
    elif direction == SELL:
        if position_side < 0:
            return STAY_SHORT
        if not settings.allow_shorts:
            return CLOSE_LONG if position_side > 0 else NO_SHORTS
    else:
        return NOT_A_SIDE
    wanted = settings.position_size if settings.position_size is not None else signal.size
    size = min(max(wanted, 0.0), settings.max_position)
    if size <= 0:  # NaN is not <= 0: it passes on, as Python's min/max leave it
        if direction == BUY:
            action: Action = "close_short" if position_side < 0 else "none"
        else:
            action = "close_long" if position_side > 0 else "none"
        return _new(Decision, (action, 0.0, signal.reason or ZERO_SIZE))
    note = (
        f"capped at max_position={settings.max_position:g}"
        if wanted > settings.max_position
        else None
    )
    if direction == BUY:
        action = "reverse_to_long" if position_side < 0 else "open_long"
    else:
        action = "reverse_to_short" if position_side > 0 else "open_short"
    return _new(Decision, (action, size, note))
