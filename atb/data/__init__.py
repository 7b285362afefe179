"""Market data: load, validate and select OHLCV bars (bundled BTCUSDT 1h or a user's CSV)."""

from atb.data.loader import BUNDLED_PATH, Bars, DataError, Gap, find_gaps, fingerprint, load_bars

__all__ = ["BUNDLED_PATH", "Bars", "DataError", "Gap", "find_gaps", "fingerprint", "load_bars"]
