"""Paper/live loop speed (issue 6), printed as figures for the closing note.

- Loop overhead per iteration, excluding the wait on the exchange: the real `LiveEngine`
  (strategy on the trailing window, decision path, per-bar records in SQLite, probes,
  metrics), fed by the offline replay one new candle per poll; the time spent inside the
  feed's fetch (and any exchange call) is measured by the engine and subtracted.
- Orders placed per second through ccxt: market orders through the `exchange` node
  (real ccxt, signing, error mapping, response parsing) against FakeBinance.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from atb_testkit import FakeBinance

from atb.db.node import Database, DatabaseConfig
from atb.engine.live import LiveEngine, LiveEngineConfig
from atb.exchange.ccxt_exchange import CcxtExchange, CcxtExchangeConfig
from atb.exchange.replay import ReplayExchange, ReplayExchangeConfig
from atb.runtime.context import RunContext
from atb.strategies.base import Strategy

ITERATIONS = 400


def _strategy(name: str, ctx: RunContext) -> Strategy:
    if name == "ml_basic":
        from atb.strategies.ml_basic import MlBasic, MlBasicConfig

        return MlBasic(
            MlBasicConfig.model_validate({"_target_": "atb.strategies.ml_basic.MlBasic"}), ctx
        )
    from atb.strategies.sma_crossover import SmaCrossover, SmaCrossoverConfig

    return SmaCrossover(
        SmaCrossoverConfig.model_validate(
            {"_target_": "atb.strategies.sma_crossover.SmaCrossover", "fast": 3, "slow": 8}
        ),
        ctx,
    )


def loop_overhead(tmp: Path, strategy_name: str) -> dict[str, Any]:
    ctx = RunContext(mode="paper", strategy=strategy_name, config={"live": {"session": "b"}})
    db = Database(DatabaseConfig.model_validate(
        {"_target_": "atb.db.node.Database", "url": f"sqlite:///{tmp / (strategy_name + '.db')}"}
    ), ctx)  # fmt: skip
    feed = ReplayExchange(
        ReplayExchangeConfig.model_validate(
            {"_target_": "atb.exchange.replay.ReplayExchange", "step": True}
        ),
        ctx,
    )
    strategy = _strategy(strategy_name, ctx)
    engine = LiveEngine(LiveEngineConfig.model_validate({
        "_target_": "atb.engine.live.LiveEngine", "check_interval": 1e-6,
        "max_iterations": ITERATIONS, "log_orders": False,
    }), ctx, exchange=feed, strategy=strategy, db=db)  # fmt: skip
    for node in (db, feed, strategy, engine):
        if hasattr(node, "start"):
            node.start()
    t0 = time.perf_counter()
    engine.run()
    wall = time.perf_counter() - t0
    engine.stop()
    db.stop()
    stats = list(engine.stats)[1:]  # the first iteration warms caches (model, SQL)
    overhead = np.array([total - net for total, net in stats]) * 1000
    return {
        "p50": float(np.percentile(overhead, 50)), "p99": float(np.percentile(overhead, 99)),
        "fetch_p50": float(np.percentile([net for _, net in stats], 50) * 1000),
        "wall": wall, "trades": len(engine.portfolio.trades),
    }  # fmt: skip


def test_loop_overhead_per_iteration(tmp_path: Path) -> None:
    for name in ("ml_basic", "sma_crossover"):
        r = loop_overhead(tmp_path, name)
        print(
            f"\n[live] loop overhead excl. exchange wait, {name}, replay feed, SQLite records, "
            f"{ITERATIONS} iterations: p50 {r['p50']:.2f} ms | p99 {r['p99']:.2f} ms "
            f"(fetch p50 {r['fetch_p50']:.3f} ms; {r['trades']} trades; wall {r['wall']:.2f} s)"
        )
        # An hourly strategy polls every 60 s: overhead must be a rounding error of that.
        assert r["p99"] < 500


def test_orders_per_second_through_ccxt() -> None:
    n = 200
    with FakeBinance(balances={"USDT": 10_000_000.0, "BTC": 0.0}) as fake:
        config = CcxtExchangeConfig.model_validate({
            "_target_": "atb.exchange.ccxt_exchange.CcxtExchange", "base_url": fake.url,
            "api_key": fake.api_key, "api_secret": fake.api_secret,
            "options": {"fetchMarkets": {"types": ["spot"]}, "fetchCurrencies": False,
                        "fetchMargins": False},
            # Measure atb + ccxt, not ccxt's client-side throttle.
            "rate_limit": False,
        })  # fmt: skip
        ex = CcxtExchange(config, RunContext(mode="live"))
        ex.start()
        times = []
        t0 = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            ex.market_order(1, 0.01, f"atb-bench-{i}")
            times.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - t0
        assert len(fake.orders) == n
    rate = n / elapsed
    print(
        f"\n[live] market orders through ccxt -> FakeBinance: {rate:.0f} orders/s "
        f"(median {statistics.median(times) * 1000:.2f} ms per order, {n} orders)"
    )
    assert rate > 20
