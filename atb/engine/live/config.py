"""The `live` node's settings (conf/mode/_session.yaml): the shared trading fields plus
the loop's own."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from atb.config.base import field_error
from atb.engine.trading import TradingConfig


class LiveEngineConfig(TradingConfig):
    trading: Literal["paper", "live"] = Field("paper", description="paper: simulated fills")
    i_understand_the_risks: bool = Field(False, description="required for trading: live")
    check_interval: float = Field(
        60.0, gt=0, allow_inf_nan=False, description="seconds between polls"
    )
    history: int | None = Field(
        None, ge=2, le=1000, description="candles per poll; null = strategy warmup + 6"
    )
    max_drawdown: float | None = Field(
        0.2, gt=0, lt=1, description="max_drawdown_breach risk event at this drawdown (null: off)"
    )
    max_daily_loss: float | None = Field(
        None, gt=0, lt=1, description="daily_loss_limit_reached at this loss since 00:00 UTC"
    )
    max_consecutive_failures: int = Field(5, ge=1, description="stop after this many in a row")
    cooldown: float = Field(
        5.0, ge=0, allow_inf_nan=False, description="seconds after a failed iteration (doubles)"
    )
    cooldown_max: float = Field(300.0, ge=0, allow_inf_nan=False, description="cap on the cooldown")
    stale_after: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="seconds; newest candle older is stale (null = 2 × timeframe)",
    )
    stale_polls: int = Field(
        3, ge=1, description="same candle this many polls after a new one was due is stale"
    )
    max_iterations: int | None = Field(None, ge=1, description="null = until stopped")
    session: str = Field("default", min_length=1, max_length=64, description="resume key")
    resume: bool = Field(True, description="continue the previous run of this session")
    record_log_dir: str | None = Field(
        None,
        description="write-ahead log of the session's records (record_log.py); null = next "
        "to the journal's spill file",
    )
    record_flush_timeout: float = Field(
        10.0,
        ge=0,
        allow_inf_nan=False,
        description="at stop, wait this long for held records to reach the DB",
    )

    @model_validator(mode="after")
    def _live_is_opt_in(self) -> LiveEngineConfig:
        if self.trading == "live":
            if not self.i_understand_the_risks:
                raise field_error(
                    "i_understand_the_risks",
                    "mode=live places real orders with real money: add "
                    "live.i_understand_the_risks=true (atb live: --live-trading "
                    "--i-understand-the-risks), or use mode=paper",
                )
            if self.allow_shorts:
                raise field_error("allow_shorts", "live trading is spot only: shorts are off")
        return self
