"""End-of-run performance metrics, from the equity curve (one point per bar) and the trades.

Conventions (the tests compute each by hand):
- returns are fractions (0.12 = +12 %); `max_drawdown` is positive (0.2 = fell 20 % from a peak);
- per-bar returns r_t = equity_t / equity_{t-1} - 1, the first against the initial balance;
- annualisation uses the bar length: periods/year = 365 days / bar (crypto trades 24/7);
- sharpe = mean(r) / std(r, ddof=1) * sqrt(periods/year), risk-free rate 0;
- sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(periods/year);
- calmar = annualised return / max drawdown;
- profit_factor = gross profit / gross loss; expectancy = mean net pnl per trade;
- buy_and_hold_return = last close / first close - 1 over the same bars.
Ratios with a zero denominator are None ("undefined"), never inf: they are stored as JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from operator import attrgetter
from typing import Any

import numpy as np

from atb.engine.portfolio import Trade

YEAR_S = 365 * 86400.0
_PNL = attrgetter("pnl")


def compute_metrics(
    equity: np.ndarray,
    initial_balance: float,
    trades: Sequence[Trade],
    closes: np.ndarray,
    bar_seconds: float,
    fees_paid: float,
    drawdown: np.ndarray | None = None,
    durations: np.ndarray | None = None,
) -> dict[str, Any]:
    """`drawdown`: `drawdown_curve(equity, initial_balance)` when the caller has it already;
    `durations`: the trades' `duration_s`, likewise."""
    n = len(equity)
    final = float(equity[-1]) if n else initial_balance
    total = final / initial_balance - 1.0
    periods = YEAR_S / bar_seconds
    years = n / periods if n else 0.0
    annual = _annualise(total, years)

    curve = np.concatenate(([initial_balance], np.asarray(equity, dtype=float)))
    returns = curve[1:] / curve[:-1] - 1.0
    if drawdown is None:
        drawdown = drawdown_curve(curve[1:], initial_balance)
    max_dd = float(drawdown.max()) if n else 0.0

    sharpe = sortino = None
    if returns.size > 1:
        mean = float(returns.mean())
        std = float(returns.std(ddof=1))
        if std > 0:
            sharpe = mean / std * math.sqrt(periods)
        downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2)))
        if downside > 0:
            sortino = mean / downside * math.sqrt(periods)

    pnl = np.fromiter(map(_PNL, trades), dtype=float, count=len(trades))
    wins = pnl[pnl > 0]
    losses = pnl[pnl <= 0]
    gross_loss = float(-losses.sum())
    if durations is None:
        durations = np.array([t.duration_s for t in trades], dtype=float)
    return {
        "initial_balance": initial_balance,
        "final_equity": final,
        "total_return": total,
        "annualized_return": annual,
        "max_drawdown": max_dd,
        "sharpe": sharpe,
        "sortino": sortino,
        "calmar": annual / max_dd if max_dd > 0 and annual is not None else None,
        "num_trades": len(trades),
        "win_rate": len(wins) / len(trades) if trades else None,
        "profit_factor": float(wins.sum()) / gross_loss if gross_loss > 0 else None,
        "expectancy": float(pnl.mean()) if trades else None,
        "fees_paid": fees_paid,
        "avg_trade_duration_s": float(np.mean(durations)) if len(durations) else None,
        "buy_and_hold_return": float(closes[-1] / closes[0] - 1.0) if len(closes) else 0.0,
        "bars": n,
    }


def _annualise(total: float, years: float) -> float | None:
    if years <= 0 or total <= -1.0:
        return None if years <= 0 else -1.0
    return float((1.0 + total) ** (1.0 / years) - 1.0)


def drawdown_curve(equity: np.ndarray, initial_balance: float) -> np.ndarray:
    """Per-bar drawdown from the running peak (the peak starts at the initial balance)."""
    peak = np.maximum.accumulate(np.maximum(equity, initial_balance))
    return 1.0 - equity / peak
