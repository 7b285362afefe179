"""Human-facing output of a run: the summary table and the trades CSV export."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from atb.engine.portfolio import Trade

# (metric key, label, format) in display order.
_ROWS: list[tuple[str, str, str]] = [
    ("initial_balance", "Initial balance", "money"),
    ("final_equity", "Final equity", "money"),
    ("total_return", "Total return", "pct"),
    ("annualized_return", "Annualised return", "pct"),
    ("buy_and_hold_return", "Buy & hold return", "pct"),
    ("max_drawdown", "Max drawdown", "pct"),
    ("sharpe", "Sharpe ratio", "num"),
    ("sortino", "Sortino ratio", "num"),
    ("calmar", "Calmar ratio", "num"),
    ("num_trades", "Trades", "int"),
    ("win_rate", "Win rate", "pct"),
    ("profit_factor", "Profit factor", "num"),
    ("expectancy", "Expectancy / trade", "money"),
    ("fees_paid", "Fees paid", "money"),
    ("avg_trade_duration_s", "Avg trade duration", "duration"),
    ("bars", "Bars", "int"),
]


def _fmt(value: Any, kind: str) -> str:
    if value is None:
        return "n/a"
    if kind == "pct":
        return f"{value * 100:.2f} %"
    if kind == "money":
        return f"{value:,.2f}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "duration":
        return str(timedelta(seconds=round(value)))
    return f"{value:.3f}"


def summary_table(
    metrics: dict[str, Any],
    header: dict[str, str],
    footer: Sequence[tuple[str, str]] = (),
) -> str:
    """Plain aligned text: a few identifying lines, then one metric per line, then the
    strategy's own lines (`footer`, e.g. the model's holdout scores)."""
    rows = [(k, v) for k, v in header.items()]
    rows += [(label, _fmt(metrics.get(key), kind)) for key, label, kind in _ROWS]
    footer_at = len(rows)
    rows += list(footer)
    width = max(len(label) for label, _ in rows)
    value_width = max(len(value) for _, value in rows)
    rule = "-" * (width + value_width + 3)
    lines = [rule]
    for i, (label, value) in enumerate(rows):
        if i == len(header) or (footer and i == footer_at):
            lines.append(rule)
        lines.append(f"{label.ljust(width)}   {value.rjust(value_width)}")
    lines.append(rule)
    return "\n".join(lines)


TRADE_COLUMNS = [
    "trade_no",
    "side",
    "qty",
    "entry_time",
    "entry_price",
    "exit_time",
    "exit_price",
    "fees",
    "pnl",
    "return_pct",
    "exit_reason",
    "bars_held",
]


def export_trades_csv(trades: Sequence[Trade], path: Path) -> Path:
    path = path.expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(TRADE_COLUMNS)
        for t in trades:
            writer.writerow(
                [
                    t.id,
                    "long" if t.side > 0 else "short",
                    repr(t.qty),
                    t.entry_time.isoformat(),
                    repr(t.entry_price),
                    t.exit_time.isoformat(),
                    repr(t.exit_price),
                    repr(t.fees),
                    repr(t.pnl),
                    repr(t.return_pct),
                    t.exit_reason,
                    t.bars_held,
                ]
            )
    return path
