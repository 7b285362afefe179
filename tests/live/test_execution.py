"""The Execution interface in-process: paper's simulated fills are the backtest's, live's
exchange fills are booked through the same path with their ids on the Order, and the loop
backs off on an injected clock (no sleeping)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from atb_testkit import FakeBinance
from live_helpers import zigzag_candles

from atb.engine.decision import DecisionPath
from atb.engine.execution import Orphan, SimulatedExecution
from atb.engine.fills import FillModel
from atb.engine.inputs import Bar, Signal
from atb.engine.live import LiveEngine, LiveEngineConfig, LoopFailed
from atb.engine.live.exchange_execution import ExchangeExecution
from atb.engine.live.simulated import PaperExecution
from atb.engine.orders import Order
from atb.engine.portfolio import Portfolio
from atb.engine.risk import RiskSettings
from atb.exchange.ccxt_exchange import CcxtExchange, CcxtExchangeConfig
from atb.runtime.context import RunContext
from atb.strategies.base import BUY, SELL
from atb.strategies.sma_crossover import SmaCrossover, SmaCrossoverConfig

T0 = datetime(2024, 1, 1, tzinfo=UTC)


class ManualClock:
    """Time that moves only when the loop waits: a wait of w seconds is w seconds later."""

    def __init__(self) -> None:
        self.now = 1_000.0
        self.waits: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def wait(self, event: threading.Event, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now += seconds
        return event.is_set()


def _bars(n: int = 60) -> list[Bar]:
    out, price = [], 100.0
    for i in range(n):
        drift = 1.01 if (i // 7) % 2 else 0.99
        o, c = price, price * drift
        out.append(Bar(i, T0 + timedelta(hours=i), o, max(o, c) * 1.002, min(o, c) * 0.998, c, 1))
        price = c
    return out


def _signal(i: int) -> Signal | None:
    if i % 7 == 3:
        return Signal(BUY, size=0.5, stop_loss=0.02, take_profit=0.03)
    if i % 7 == 6:
        return Signal(SELL, size=0.5)
    return None


def _drive(path: DecisionPath) -> None:
    for bar in _bars():
        path.on_bar(bar, _signal(bar.index))


def test_paper_fills_are_the_backtests_under_paper_ids() -> None:
    risk, fills = RiskSettings(True, 0.9, None), FillModel(0.001, 0.0005)
    backtest = DecisionPath(Portfolio(10_000.0), fills, risk, log_orders=False)
    paper = DecisionPath(
        Portfolio(10_000.0), fills, risk, log_orders=False, execution=PaperExecution("r" * 32)
    )
    assert isinstance(backtest.execution, SimulatedExecution)
    _drive(backtest)
    _drive(paper)
    assert backtest.portfolio.trades and paper.portfolio.trades == backtest.portfolio.trades
    assert [(o.status, o.qty, o.price) for o in paper.orders] == [
        (o.status, o.qty, o.price) for o in backtest.orders
    ]
    assert all(o.exchange_order_id == f"paper_{'r' * 12}_{o.id}" for o in paper.orders)
    assert all(o.exchange_order_id is None for o in backtest.orders)
    # At the session's end a paper order waiting for the next open is cancelled.
    pos = paper.portfolio.position
    paper.pending.append(paper.new_order(T0, 1 if pos is None else -pos.side, "exit", "signal"))
    cancelled = paper.execution.finish()
    assert cancelled and not paper.pending
    assert all(o.status == "cancelled" and "session stopped" in (o.note or "") for o in cancelled)
    settled = paper.execution.settle_orphan(
        Orphan("old", 3, None, 1, "entry", "signal"), book=False, run_id="new"
    )
    assert settled.status == "cancelled" and settled.note.startswith("cancelled at start by run")


@pytest.fixture
def exchange() -> Iterator[tuple[FakeBinance, CcxtExchange]]:
    with FakeBinance(
        candles=zigzag_candles(), warmup=40, balances={"USDT": 10_000.0, "BTC": 0.0}
    ) as fake:
        config = CcxtExchangeConfig.model_validate({
            "_target_": "atb.exchange.ccxt_exchange.CcxtExchange", "base_url": fake.url,
            "api_key": fake.api_key, "api_secret": fake.api_secret, "timeout": 2,
            "trading": True,
            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False,
                        "fetchMargins": False},
            "retry": {"attempts": 0, "initial": 0.01, "max": 0.05},
        })  # fmt: skip
        ex = CcxtExchange(config, RunContext(mode="live"))
        ex.start()
        yield fake, ex


def test_exchange_fills_are_booked_once_with_their_ids_on_the_order(
    exchange: tuple[FakeBinance, CcxtExchange],
) -> None:
    fake, ex = exchange
    execution = ExchangeExecution(ex, "a" * 32)
    written: list[tuple[int, str]] = []
    execution.on_change = lambda orders: written.extend((o.id, o.status) for o in orders)
    path = DecisionPath(
        Portfolio(10_000.0),
        FillModel(0.001, 0.0005),
        RiskSettings(False, 0.5, None),
        log_orders=False,
        execution=execution,
    )
    price = float(fake.price)
    bar = Bar(0, T0, price, price, price, price, 1.0)
    step = path.on_bar(bar, Signal(BUY, size=1.0))
    execution.submit(bar, step)
    (entry,) = path.orders
    placed = fake.orders[0]
    assert entry.status == "filled" and step.fills == [entry]
    assert entry.client_order_id == placed.client_order_id == f"atb-{'a' * 16}-1"
    assert entry.exchange_order_id == str(placed.order_id)
    assert path.portfolio.position is not None
    assert path.portfolio.position.qty == pytest.approx(float(fake.balances()["BTC"].free))
    # Announced pending before the request left, then settled.
    assert written == [(1, "pending"), (1, "filled")]
    assert not execution.blocked and execution.in_flight == []

    fake.faults.reject_orders(code=-2010, msg="Account has insufficient balance")
    bar = Bar(1, T0 + timedelta(hours=1), price, price, price, price, 1.0)
    step = path.on_bar(bar, Signal(SELL, size=1.0))
    execution.submit(bar, step)
    exit_order: Order = path.orders[-1]
    assert exit_order.status == "rejected" and exit_order.error_code == "-2010"
    assert "insufficient balance" in (exit_order.note or "")
    assert path.portfolio.position is not None  # nothing booked for a rejection


def test_failed_iterations_back_off_on_the_injected_clock(
    exchange: tuple[FakeBinance, CcxtExchange],
) -> None:
    fake, ex = exchange
    fake.faults.add("http_500", path="/api/v3/klines", times=None)
    ctx = RunContext(mode="paper", timeframe="1h")
    strategy = SmaCrossover(
        SmaCrossoverConfig.model_validate(
            {"_target_": "atb.strategies.sma_crossover.SmaCrossover", "fast": 3, "slow": 8}
        ),
        ctx,
    )
    config = LiveEngineConfig.model_validate({
        "_target_": "atb.engine.live.LiveEngine", "check_interval": 60, "cooldown": 5,
        "cooldown_max": 12, "max_consecutive_failures": 4,
    })  # fmt: skip
    clock = ManualClock()
    engine = LiveEngine(config, ctx, exchange=ex, strategy=strategy, clock=clock)
    try:
        engine.start()
        with pytest.raises(LoopFailed, match="4 consecutive failed iterations"):
            engine.run()
        assert clock.waits == [5, 10, 12]  # doubling, capped; never slept for real
        beat = ctx.probes.heartbeat.snapshot()
        assert beat["failures"] == 4 and beat["last_pulse_at"] == clock.now
        assert beat["started_at"] == 1_000.0 and beat["stop_reason"] == "failed"
    finally:
        engine.stop()
