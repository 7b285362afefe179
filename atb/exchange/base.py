"""What the paper/live engine needs from an exchange node, and the errors it understands.

The engine never sees ccxt: a feed hands it validated, closed candles and its clock; an
executor places market orders and answers "did this client order id reach you?". Errors
come in two kinds only, because the engine handles exactly two situations differently:

- `ExchangeUnavailable`: the exchange could not be reached or answered nonsense, after the
  node's own retries. Counts as a failed iteration (cooldown, then stop after N).
- `OrderRejected`: the exchange refused an order (reason and code attached). Recorded on
  the order row and never retried: the same order would be refused again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import pandas as pd

CANDLE_COLUMNS = ("open", "high", "low", "close", "volume")


class ExchangeUnavailable(RuntimeError):
    """Network / availability / rate-limit failure that survived the retries."""

    def __init__(self, call: str, kind: str, message: str) -> None:
        self.call = call
        self.kind = kind
        super().__init__(f"{call}: {kind}: {message}")


class MalformedResponse(ValueError):
    """The exchange answered 200 with data that is not what the call promises.

    ccxt does not raise on a truncated JSON body: it returns rows of None. Every field the
    engine uses is validated so garbage is a retried failure, never a trade.
    """


class OrderRejected(RuntimeError):
    """The exchange refused the order; `reason` is its message, `code` its error code."""

    def __init__(self, reason: str, code: str | None = None, kind: str = "rejected") -> None:
        self.reason = reason
        self.code = code
        self.kind = kind
        super().__init__(f"{kind}: {reason}" + (f" (code {code})" if code else ""))


@dataclass(frozen=True, slots=True)
class OrderResult:
    """An order as the exchange reports it. Fees are split by the asset they were paid in,
    because Binance takes a buy's fee from the base asset it delivers."""

    client_order_id: str
    exchange_order_id: str | None
    status: str  # filled | open | cancelled
    side: int
    qty: float  # filled base quantity, gross of any base-asset fee
    price: float  # average fill price
    fee_base: float = 0.0
    fee_quote: float = 0.0
    timestamp_ms: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def net_qty(self) -> float:
        """What the account actually received (buys) or gave (sells) in the base asset."""
        return self.qty - self.fee_base if self.side > 0 else self.qty

    @property
    def fee_in_quote(self) -> float:
        return self.fee_quote + self.fee_base * self.price


@runtime_checkable
class MarketFeed(Protocol):
    """Closed candles for the run's symbol/timeframe, and the clock they are judged by."""

    def fetch_candles(self, limit: int) -> pd.DataFrame:
        """The newest `limit` closed candles: columns open..volume on a UTC DatetimeIndex
        of candle open times, ascending. Raises ExchangeUnavailable."""
        ...

    def now_ms(self) -> int:
        """The feed's clock (wall clock for a real exchange, simulated for a replay)."""
        ...

    @property
    def exhausted(self) -> bool:
        """True when no new candle can ever come (end of a replay)."""
        ...

    def describe(self) -> dict[str, Any]:
        """Identity for probes and run records: exchange id, url, sandbox; nothing secret."""
        ...

    def state(self) -> dict[str, Any]:
        """Last error and failure counters, for the health server."""
        ...


@runtime_checkable
class OrderExecutor(Protocol):
    """Real orders (mode=live only)."""

    def market_order(self, side: int, qty: float, client_order_id: str) -> OrderResult: ...

    def find_order(self, client_order_id: str) -> OrderResult | None: ...

    def balances(self) -> tuple[float, float]:
        """(base asset total, quote asset free) for the run's symbol."""
        ...

    def last_price(self) -> float: ...

    def amount_to_precision(self, qty: float) -> float: ...

    def min_notional(self) -> float: ...


def validate_candles(rows: list[Any], timeframe_ms: int) -> pd.DataFrame:
    """ccxt OHLCV rows -> the candle frame, or MalformedResponse naming the first bad row."""
    import math

    clean: list[tuple[int, float, float, float, float, float]] = []
    for i, row in enumerate(rows):
        if not isinstance(row, list | tuple) or len(row) < 6:
            raise MalformedResponse(f"candle row {i} is not [time, o, h, l, c, v]: {row!r:.80}")
        ts = row[0]
        if not isinstance(ts, int | float) or isinstance(ts, bool) or ts <= 0:
            raise MalformedResponse(f"candle row {i}: bad timestamp {ts!r}")
        values = []
        for name, value in zip(CANDLE_COLUMNS, row[1:6], strict=True):
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise MalformedResponse(f"candle row {i}: {name} is {value!r}")
            if not math.isfinite(value) or value < 0:
                raise MalformedResponse(f"candle row {i}: {name} is {value!r}")
            values.append(float(value))
        o, h, low, c, v = values
        if h < max(o, c, low) or low > min(o, c):
            raise MalformedResponse(f"candle row {i}: high/low do not bound open/close")
        if clean and int(ts) <= clean[-1][0]:
            raise MalformedResponse(f"candle row {i}: timestamps are not increasing")
        clean.append((int(ts), o, h, low, c, v))
    frame = pd.DataFrame(clean, columns=["timestamp", *CANDLE_COLUMNS])
    stamps = pd.to_datetime(frame.pop("timestamp"), unit="ms", utc=True)
    frame.index = pd.DatetimeIndex(stamps, name="time").as_unit("ns")
    return frame.astype("float64")
