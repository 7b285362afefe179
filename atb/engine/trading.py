"""The trading fields every engine shares: one model, inherited by the backtest and the
paper/live configs, so a fee, a size cap or a record switch means the same in every mode."""

from __future__ import annotations

from pydantic import Field

from atb.config.base import NodeConfig, StrictModel
from atb.engine.fills import FillModel
from atb.engine.risk import RiskSettings


class RecordSettings(StrictModel):
    enabled: bool = Field(True, description="write the run and its results to the db node")
    account_history: bool = Field(
        True, description="per-bar balance/equity/drawdown/exposure (compressed, run_series)"
    )
    decisions: bool = Field(True, description="every non-HOLD signal and its outcome (run_series)")
    predictions: bool = Field(True, description="per-bar model predictions (run_series)")


class TradingConfig(NodeConfig):
    """Account, sizing, simulated fills and recording: the fields of `backtest` and `live`."""

    initial_balance: float = Field(
        10_000.0, gt=0, description="starting cash (quote); live: most of the quote balance used"
    )
    fee: float = Field(
        0.001, ge=0, lt=0.1, description="fraction of notional per simulated fill (live: "
        "only when the exchange reports no fee)"
    )  # fmt: skip
    slippage: float = Field(0.0005, ge=0, lt=0.1, description="adverse fraction per simulated fill")
    allow_shorts: bool = Field(False, description="SELL from flat opens a short (not live)")
    position_size: float | None = Field(
        None, gt=0, le=1, description="fraction of balance per entry; null = strategy's size"
    )
    max_position: float = Field(1.0, gt=0, le=1, description="cap on one position's fraction")
    log_orders: bool = Field(False, description="one order/risk event per order")
    record: RecordSettings = Field(default_factory=RecordSettings)

    def fill_model(self) -> FillModel:
        return FillModel(self.fee, self.slippage)

    def risk_settings(self) -> RiskSettings:
        return RiskSettings(self.allow_shorts, self.max_position, self.position_size)
