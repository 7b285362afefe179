"""The Prometheus metrics of a run, and the small typed helpers that update them.

Everything lives in one dedicated `REGISTRY` (not prometheus-client's global one), so a
library the process imports cannot leak its own metrics into `/metrics`, and tests can
reset state without touching anything else.

Trading metrics are labelled by `mode`, `strategy` and `symbol`. Callers normally pass
none of them: `set_run_labels()` (called by the health server at start, and by anyone who
knows better, e.g. the engine) sets the defaults; a multi-symbol caller passes `symbol=`.

Helpers for the engine / journal / alert router:

    set_run_labels(mode=, strategy=, symbol=, run_id=)
    record_iteration(duration)              # one loop iteration, seconds
    record_order(status)                    # "filled", "rejected", "cancelled", ...
    record_rejection(reason)                # risk / exchange rejection reason
    record_exchange_error(kind)             # ccxt exception class name, e.g. "NetworkError"
    set_account(balance, equity, drawdown, open_positions)
    set_candle_age(seconds)                 # age of the newest candle the loop has
    set_journal(queue_depth, spilled, written)   # absolute totals from Journal.state()
    record_alert(channel, outcome)          # "sent" | "failed" | "dropped"
    record_fill(fee)                        # one filled order and its fee (quote currency)
    record_realized_pnl(pnl)                # a closed round trip's net PnL (quote currency)
    observe_exchange_request(endpoint, outcome, seconds)   # one ccxt call: ok | <error kind>

The registry also carries the process and Python collectors and `atb_build_info`. Counters
have no `_created` companion series: they double the series count and no rule uses them.

All helpers are cheap (a dict lookup and a lock-protected add) and never raise on a
`None` value: the trading loop must never fail because of observability.
"""

from __future__ import annotations

import platform as _platform
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

disable_created_metrics()

REGISTRY = CollectorRegistry(auto_describe=True)
# process_* (CPU, memory, open fds, start time) and python_* (gc, version): the same
# collectors prometheus-client puts in its global registry, shared rather than duplicated.
for _collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    REGISTRY.register(_collector)

RUN_LABELS = ("mode", "strategy", "symbol")
_UNSET = "none"

_defaults: dict[str, str] = {"mode": _UNSET, "strategy": _UNSET, "symbol": _UNSET}
_run_id: str = ""


def set_run_labels(
    mode: str | None = None,
    strategy: str | None = None,
    symbol: str | None = None,
    run_id: str | None = None,
) -> None:
    """Default label values for every helper below; `None` keeps the current value."""
    global _run_id
    for key, value in (("mode", mode), ("strategy", strategy), ("symbol", symbol)):
        if value is not None:
            _defaults[key] = str(value)
    if run_id is not None:
        _run_id = run_id
    RUN_INFO.clear()
    RUN_INFO.labels(**_defaults, run_id=_run_id).set(1)
    _zero_series()


def _zero_series() -> None:
    """Export 0 for the run's counters before anything happens: increase()/rate() in alert
    rules need a sample before the first increment, or the first rejection is never seen."""
    labels = run_labels()
    for status in ("filled", "rejected"):
        ORDERS.labels(**labels, status=status).inc(0)
    for metric in (FILLS, FEES):
        metric.labels(**labels).inc(0)
    REALIZED_PNL.labels(**labels).inc(0)
    DATA_STALE.labels(**labels).inc(0)
    key = tuple(labels[k] for k in RUN_LABELS)
    with JOURNAL_TOTALS._lock:
        known = key in JOURNAL_TOTALS._values
    if not known:
        JOURNAL_TOTALS.set(labels, 0.0, 0.0)


def run_labels(**override: str | None) -> dict[str, str]:
    """The default labels with any non-None override applied."""
    labels = dict(_defaults)
    for key, value in override.items():
        if value is not None:
            labels[key] = str(value)
    return labels


# -- metric objects ---------------------------------------------------------------------------

BUILD_INFO = Info("atb_build", "The atb build this process runs", registry=REGISTRY)


def _build_labels() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from atb import __version__

    labels = {"version": __version__, "python": _platform.python_version()}
    for dist in ("hydra-core", "ccxt"):
        try:
            labels[dist.split("-")[0]] = version(dist)
        except PackageNotFoundError:
            labels[dist.split("-")[0]] = "unknown"
    return labels


BUILD_INFO.info(_build_labels())

RUN_INFO = Gauge(
    "atb_run_info", "The run this process executes (value is always 1)",
    [*RUN_LABELS, "run_id"], registry=REGISTRY,
)  # fmt: skip
LOOP_ITERATIONS = Counter(
    "atb_loop_iterations", "Trading-loop iterations completed", RUN_LABELS, registry=REGISTRY
)
LOOP_DURATION = Histogram(
    "atb_loop_iteration_duration_seconds",
    "Wall time of one trading-loop iteration (fetch, decide, order, record)",
    RUN_LABELS,
    # From a fast replay step (ms) to a slow exchange round trip under rate limits (tens of s).
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
LOOP_HEARTBEAT_AGE = Gauge(
    "atb_loop_heartbeat_age_seconds",
    "Seconds since the trading loop last beat (-1 before the first beat); set at scrape time",
    RUN_LABELS,
    registry=REGISTRY,
)
LOOP_MAX_SILENCE = Gauge(
    "atb_loop_max_silence_seconds",
    "Heartbeat age beyond which the loop counts as stalled (/health turns 503)",
    RUN_LABELS,
    registry=REGISTRY,
)
DATA_STALE = Gauge(
    "atb_data_stale",
    "1 while the loop holds off trading on stale candles (stale_data .. data_recovered)",
    RUN_LABELS,
    registry=REGISTRY,
)
LOOP_UP = Gauge(
    "atb_loop_up",
    "1 while the trading loop runs (starting, running, degraded, stopping); 0 when stalled, "
    "never started or stopped; set at scrape time from the heartbeat",
    RUN_LABELS,
    registry=REGISTRY,
)
LOOP_STATE = Gauge(
    "atb_loop_state",
    "1 for the trading loop's current state (starting, running, degraded, stalled, "
    "not_started, stopping, stopped), 0 for the others; set at scrape time",
    [*RUN_LABELS, "state"],
    registry=REGISTRY,
)
LOOP_STATES = ("starting", "running", "degraded", "stalled", "not_started", "stopping", "stopped")
CANDLE_AGE = Gauge(
    "atb_candle_age_seconds", "Age of the newest candle the loop has seen", RUN_LABELS,
    registry=REGISTRY,
)  # fmt: skip
ORDERS = Counter(
    "atb_orders", "Orders by final or current status", [*RUN_LABELS, "status"], registry=REGISTRY
)
REJECTIONS = Counter(
    "atb_order_rejections", "Orders rejected (by risk or by the exchange), by reason",
    [*RUN_LABELS, "reason"], registry=REGISTRY,
)  # fmt: skip
FILLS = Counter("atb_fills", "Filled orders", RUN_LABELS, registry=REGISTRY)
FEES = Counter(
    "atb_fees_quote", "Trading fees paid, in quote currency", RUN_LABELS, registry=REGISTRY
)
# A gauge, not a counter: realised PnL goes down on a losing trade, and a counter that
# decreases reads as a process restart to rate()/increase().
REALIZED_PNL = Gauge(
    "atb_realized_pnl_quote", "Realised PnL of closed round trips since start, quote currency",
    RUN_LABELS, registry=REGISTRY,
)  # fmt: skip
EXCHANGE_REQUEST_DURATION = Histogram(
    "atb_exchange_request_duration_seconds",
    "Wall time of one exchange API call (retries are separate calls), by endpoint and outcome",
    [*RUN_LABELS, "endpoint", "outcome"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
EXCHANGE_ERRORS = Counter(
    "atb_exchange_errors", "Exchange API errors by type (ccxt exception class)",
    [*RUN_LABELS, "kind"], registry=REGISTRY,
)  # fmt: skip
BALANCE = Gauge("atb_balance", "Free quote balance", RUN_LABELS, registry=REGISTRY)
EQUITY = Gauge("atb_equity", "Balance plus open positions at market", RUN_LABELS, registry=REGISTRY)
DRAWDOWN = Gauge(
    "atb_drawdown_ratio", "Drawdown from peak equity (0.1 = 10 %)", RUN_LABELS, registry=REGISTRY
)
OPEN_POSITIONS = Gauge("atb_open_positions", "Open positions", RUN_LABELS, registry=REGISTRY)
JOURNAL_QUEUE = Gauge(
    "atb_journal_queue_depth", "Events waiting in the journal queue", RUN_LABELS,
    registry=REGISTRY,
)  # fmt: skip
ALERTS = Counter(
    "atb_alerts", "Alert deliveries by channel and outcome", [*RUN_LABELS, "channel", "outcome"],
    registry=REGISTRY,
)  # fmt: skip
CHECK_STATUS = Gauge(
    "atb_health_check_status",
    "Last /status result per component: 0 healthy, 1 degraded, 2 unhealthy",
    ["component"],
    registry=REGISTRY,
)
CHECK_DURATION = Gauge(
    "atb_health_check_duration_seconds", "Duration of the last run of each health check",
    ["component"], registry=REGISTRY,
)  # fmt: skip


class _JournalTotals(Collector):
    """`written`/`spilled` are totals the journal keeps itself; expose them as counters.

    prometheus-client's Counter can only be incremented, and the journal reports absolute
    values, so this collector renders the latest absolute value as a counter sample.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[tuple[str, ...], tuple[float, float]] = {}

    def set(self, labels: dict[str, str], spilled: float, written: float) -> None:
        key = tuple(labels[k] for k in RUN_LABELS)
        with self._lock:
            self._values[key] = (spilled, written)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()

    @staticmethod
    def _families() -> tuple[CounterMetricFamily, CounterMetricFamily]:
        return (
            CounterMetricFamily(
                "atb_journal_spilled", "Events spilled to local disk", labels=RUN_LABELS
            ),
            CounterMetricFamily(
                "atb_journal_written", "Events written to the DB", labels=RUN_LABELS
            ),
        )

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        spilled, written = self._families()
        with self._lock:
            items = list(self._values.items())
        for key, (s, w) in items:
            spilled.add_metric(list(key), s)
            written.add_metric(list(key), w)
        yield spilled
        yield written


JOURNAL_TOTALS = _JournalTotals()
REGISTRY.register(JOURNAL_TOTALS)

_LABELLED: tuple[Any, ...] = (
    RUN_INFO, LOOP_ITERATIONS, LOOP_DURATION, LOOP_HEARTBEAT_AGE, LOOP_UP, LOOP_STATE,
    CANDLE_AGE, ORDERS, REJECTIONS,
    EXCHANGE_ERRORS, BALANCE, EQUITY, DRAWDOWN, OPEN_POSITIONS, JOURNAL_QUEUE, ALERTS,
    CHECK_STATUS, CHECK_DURATION, FILLS, FEES, REALIZED_PNL, EXCHANGE_REQUEST_DURATION,
    LOOP_MAX_SILENCE, DATA_STALE,
)  # fmt: skip


# -- helpers ------------------------------------------------------------------------------------


def record_iteration(
    duration: float, *, strategy: str | None = None, symbol: str | None = None
) -> None:
    labels = run_labels(strategy=strategy, symbol=symbol)
    LOOP_ITERATIONS.labels(**labels).inc()
    if duration is not None and duration >= 0:
        LOOP_DURATION.labels(**labels).observe(duration)


def record_order(status: str, *, strategy: str | None = None, symbol: str | None = None) -> None:
    ORDERS.labels(**run_labels(strategy=strategy, symbol=symbol), status=_label(status)).inc()


def record_rejection(
    reason: str, *, strategy: str | None = None, symbol: str | None = None
) -> None:
    REJECTIONS.labels(**run_labels(strategy=strategy, symbol=symbol), reason=_label(reason)).inc()


def record_exchange_error(
    kind: str | BaseException | type[BaseException],
    *,
    strategy: str | None = None,
    symbol: str | None = None,
) -> None:
    """`kind` may be the exception (or its class): its class name becomes the label."""
    if isinstance(kind, BaseException):
        kind = type(kind).__name__
    elif isinstance(kind, type):
        kind = kind.__name__
    EXCHANGE_ERRORS.labels(**run_labels(strategy=strategy, symbol=symbol), kind=_label(kind)).inc()


def set_account(
    balance: float | None = None,
    equity: float | None = None,
    drawdown: float | None = None,
    open_positions: int | None = None,
    *,
    strategy: str | None = None,
    symbol: str | None = None,
) -> None:
    _set_gauges(
        run_labels(strategy=strategy, symbol=symbol),
        ((BALANCE, balance), (EQUITY, equity), (DRAWDOWN, drawdown),
         (OPEN_POSITIONS, open_positions)),
    )  # fmt: skip


def _set_gauges(labels: dict[str, str], values: Iterable[tuple[Gauge, float | None]]) -> None:
    """Set each gauge that has a value; `None` leaves it as it is."""
    for gauge, value in values:
        if value is not None:
            gauge.labels(**labels).set(float(value))


def set_candle_age(
    seconds: float | None, *, strategy: str | None = None, symbol: str | None = None
) -> None:
    _set_gauges(run_labels(strategy=strategy, symbol=symbol), ((CANDLE_AGE, seconds),))


def set_journal(
    queue_depth: int | None = None, spilled: int | None = None, written: int | None = None
) -> None:
    """Absolute journal figures (as in `Journal.state()`); `None` leaves a value as it is."""
    labels = run_labels()
    if queue_depth is not None:
        JOURNAL_QUEUE.labels(**labels).set(float(queue_depth))
    if spilled is not None or written is not None:
        key = tuple(labels[k] for k in RUN_LABELS)
        with JOURNAL_TOTALS._lock:
            old_s, old_w = JOURNAL_TOTALS._values.get(key, (0.0, 0.0))
        JOURNAL_TOTALS.set(
            labels,
            old_s if spilled is None else float(spilled),
            old_w if written is None else float(written),
        )


def record_fill(
    fee: float | None = None, *, strategy: str | None = None, symbol: str | None = None
) -> None:
    labels = run_labels(strategy=strategy, symbol=symbol)
    FILLS.labels(**labels).inc()
    if fee is not None and fee > 0:
        FEES.labels(**labels).inc(float(fee))


def record_realized_pnl(
    pnl: float | None, *, strategy: str | None = None, symbol: str | None = None
) -> None:
    if pnl is not None:
        REALIZED_PNL.labels(**run_labels(strategy=strategy, symbol=symbol)).inc(float(pnl))


def observe_exchange_request(endpoint: str, outcome: str, seconds: float) -> None:
    """`outcome`: "ok" or the error kind (ccxt exception class name)."""
    EXCHANGE_REQUEST_DURATION.labels(
        **run_labels(), endpoint=_label(endpoint), outcome=_label(outcome)
    ).observe(max(0.0, seconds))


def record_alert(channel: str, outcome: str) -> None:
    ALERTS.labels(**run_labels(), channel=_label(channel), outcome=_label(outcome)).inc()


def set_heartbeat_age(seconds: float | None, max_silence: float | None = None) -> None:
    LOOP_HEARTBEAT_AGE.labels(**run_labels()).set(-1.0 if seconds is None else float(seconds))
    if max_silence is not None:
        LOOP_MAX_SILENCE.labels(**run_labels()).set(float(max_silence))


def set_data_stale(stale: bool, *, symbol: str | None = None) -> None:
    DATA_STALE.labels(**run_labels(symbol=symbol)).set(1.0 if stale else 0.0)


def set_loop_state(state: str, alive: bool) -> None:
    labels = run_labels()
    LOOP_UP.labels(**labels).set(1.0 if alive else 0.0)
    for name in LOOP_STATES:
        LOOP_STATE.labels(**labels, state=name).set(1.0 if name == state else 0.0)


STATUS_VALUES = {"healthy": 0, "skipped": 0, "degraded": 1, "unhealthy": 2}


def set_check(component: str, status: str, duration: float | None) -> None:
    CHECK_STATUS.labels(component=component).set(STATUS_VALUES.get(status, 2))
    if duration is not None:
        CHECK_DURATION.labels(component=component).set(duration)


def reset_metrics() -> None:
    """Drop every labelled sample (tests; a fresh run in the same process)."""
    for metric in _LABELLED:
        metric.clear()
    JOURNAL_TOTALS.clear()
    _defaults.update(mode=_UNSET, strategy=_UNSET, symbol=_UNSET)


def render() -> bytes:
    """The registry in Prometheus text exposition format."""
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY)


def render_families(names: Iterable[str]) -> str:
    """Only these families of the registry, in text format."""
    from prometheus_client import generate_latest

    return generate_latest(REGISTRY.restricted_registry(list(names))).decode()


def _blocks(text: str) -> list[tuple[str, str]]:
    """(family name, its lines) in order; a family starts at its `# HELP` line."""
    blocks: list[tuple[str, list[str]]] = []
    for line in text.splitlines(keepends=True):
        if line.startswith("# HELP "):
            blocks.append((line.split(" ", 3)[2], [line]))
        elif blocks:
            blocks[-1][1].append(line)
    return [(name, "".join(lines)) for name, lines in blocks]


def splice(page: str, families: str) -> str:
    """`page` with each family of `families` put in place of its namesake (or appended)."""
    local = dict(_blocks(families))
    out = [local.pop(name, block) for name, block in _blocks(page)]
    return "".join(out) + "".join(local.values())


def _label(value: Any) -> str:
    # Unbounded label values (an exchange message with an order id in it) would explode the
    # series count; keep labels short and single-line.
    text = str(value).strip().splitlines()[0] if str(value).strip() else "unknown"
    return text[:64]
