"""Test doubles that speak real protocols, so tests exercise production client code."""

from atb_testkit.fake_binance import (
    Balance,
    BinanceError,
    Candle,
    FakeBinance,
    Order,
    RequestRecord,
    SymbolRules,
    Trade,
    ccxt_binance_for,
    synthetic_candles,
)
from atb_testkit.faults import INSUFFICIENT_BALANCE_MSG, Fault, FaultScript

__all__ = [
    "INSUFFICIENT_BALANCE_MSG",
    "Balance",
    "BinanceError",
    "Candle",
    "FakeBinance",
    "Fault",
    "FaultScript",
    "Order",
    "RequestRecord",
    "SymbolRules",
    "Trade",
    "ccxt_binance_for",
    "synthetic_candles",
]
