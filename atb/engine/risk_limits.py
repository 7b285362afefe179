"""Account-level risk limits of the paper/live loop: drawdown and daily loss.

Checked once per recorded bar on equity marked to the bar's close. Crossing a limit emits a
risk event once (`max_drawdown_breach`, `daily_loss_limit_reached`, both ERROR; the default
alert rule `max_drawdown_breach` fires on the first); coming back under it emits
`drawdown_recovered` / the day rolling over re-arms the daily limit. The limits report;
they do not stop the strategy from trading (the operator, or an alert route, decides).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from atb.logging.events import log_risk_event


class RiskLimits:
    def __init__(self, max_drawdown: float | None, max_daily_loss: float | None) -> None:
        self.max_drawdown = max_drawdown
        self.max_daily_loss = max_daily_loss
        self.in_drawdown_breach = False
        self.day: date | None = None
        self.day_start_equity: float | None = None
        self.daily_breached = False

    def check(self, time: datetime, equity: float, peak_equity: float) -> None:
        drawdown = 1.0 - equity / peak_equity if peak_equity > 0 else 0.0
        if self.max_drawdown is not None:
            if drawdown >= self.max_drawdown and not self.in_drawdown_breach:
                self.in_drawdown_breach = True
                _log_breach(
                    "max_drawdown_breach",
                    time,
                    ("drawdown", "drawdown", drawdown),
                    ("max_drawdown", self.max_drawdown),
                    equity=equity,
                    peak_equity=peak_equity,
                )
            elif drawdown < self.max_drawdown and self.in_drawdown_breach:
                self.in_drawdown_breach = False
                log_risk_event(
                    "drawdown_recovered",
                    time=time.isoformat(),
                    drawdown=round(drawdown, 6),
                    max_drawdown=self.max_drawdown,
                    equity=equity,
                )
        if self.max_daily_loss is None:
            return
        if self.day != time.date():
            self.day, self.day_start_equity, self.daily_breached = time.date(), equity, False
            return
        start = self.day_start_equity
        loss = 1.0 - equity / start if start else 0.0
        if loss >= self.max_daily_loss and not self.daily_breached:
            self.daily_breached = True
            _log_breach(
                "daily_loss_limit_reached",
                time,
                ("loss today", "loss", loss),
                ("max_daily_loss", self.max_daily_loss),
                equity=equity,
                day_start_equity=start,
            )


def _log_breach(
    event: str,
    time: datetime,
    measured: tuple[str, str, float],
    limit: tuple[str, float],
    **fields: Any,
) -> None:
    """Emit a limit breach: both limits report it alike (ERROR, "<label> x% reached
    live.<limit> y%", the measured value rounded), so alert rules and operators read
    them the same way. `measured` is (label in the message, field name, value)."""
    label, key, value = measured
    limit_name, limit_value = limit
    values: dict[str, Any] = {key: round(value, 6), limit_name: limit_value, **fields}
    log_risk_event(
        event,
        level="ERROR",
        message=f"{label} {value:.2%} reached live.{limit_name} {limit_value:.2%}",
        time=time.isoformat(),
        **values,
    )
