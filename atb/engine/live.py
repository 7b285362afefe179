"""The `live` node: the paper / live trading loop (main node of mode=paper and mode=live).

Every `check_interval` seconds the loop:

1. settles live orders whose outcome the exchange could not confirm last time;
2. fetches the newest closed candles from the `exchange` node (retries live there);
3. beats the heartbeat (after the fetch: a loop spinning on no data is not healthy);
4. checks freshness: the newest candle older than `stale_after` (2 × timeframe), or the
   same candle for `stale_polls` polls after a new one was due, is `stale_data`: nothing
   is traded on it until fresh data returns (`data_recovered`);
5. steps the shared decision path once per new closed bar (the backtest's path: strategy
   on the trailing window, risk/sizing, orders, fills, portfolio); in live mode the orders
   go to the exchange at once (see live_path.py);
6. records the bar: orders, positions, trades, decision, prediction, account row and the
   session state, in one transaction (live_records.py, which also documents resuming).

A failed iteration (exchange unreachable after retries, malformed data, an unexpected
error) waits `cooldown` seconds, doubling up to `cooldown_max`; after
`max_consecutive_failures` in a row the loop stops with an ERROR `engine_failed` event and
the run is recorded as failed. SIGINT/SIGTERM finish the current iteration, persist the
state and end the run as `stopped`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd
from pydantic import Field, model_validator

from atb.config.base import NodeConfig, field_error
from atb.engine.backtest import RecordSettings
from atb.engine.decision import DecisionPath, Step
from atb.engine.fills import FillModel
from atb.engine.heartbeat_store import HeartbeatWriter
from atb.engine.inputs import Bar, signal_at, utc_datetime
from atb.engine.live_path import LiveDecisionPath, PaperDecisionPath, paper_order_id
from atb.engine.live_reconcile import record_error as _record_error
from atb.engine.live_reconcile import record_log_dir, settle_orphans
from atb.engine.live_records import (
    LiveRecorder,
    PreviousSession,
    SessionState,
    position_json,
)
from atb.engine.orders import Order
from atb.engine.portfolio import Portfolio, Position
from atb.engine.record_log import replay_orphans
from atb.engine.records import clean_json, exposure_ratio
from atb.engine.risk import RiskSettings
from atb.engine.risk_limits import RiskLimits
from atb.exchange.base import (
    ExchangeUnavailable,
    MalformedResponse,
    MarketFeed,
    OrderExecutor,
    OrderResult,
)
from atb.health import metrics as _metrics
from atb.logging.events import (
    log_data_event,
    log_decision_event,
    log_engine_event,
)
from atb.runtime.context import RunContext
from atb.runtime.node import Node
from atb.strategies.base import SignalFrame, Strategy


class LiveEngineConfig(NodeConfig):
    trading: Literal["paper", "live"] = Field("paper", description="paper: simulated fills")
    i_understand_the_risks: bool = Field(False, description="required for trading: live")
    check_interval: float = Field(60.0, gt=0, description="seconds between polls")
    initial_balance: float = Field(
        10_000.0, gt=0, description="paper: starting cash; live: most of the quote balance used"
    )
    max_position: float = Field(1.0, gt=0, le=1, description="cap on one position's fraction")
    position_size: float | None = Field(
        None, gt=0, le=1, description="fraction of balance per entry; null = strategy's size"
    )
    allow_shorts: bool = Field(False, description="paper only (live trades spot)")
    fee: float = Field(0.001, ge=0, lt=0.1, description="paper fills; live: when none reported")
    slippage: float = Field(0.0005, ge=0, lt=0.1, description="paper fills: adverse fraction")
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
    cooldown: float = Field(5.0, ge=0, description="seconds after a failed iteration (doubles)")
    cooldown_max: float = Field(300.0, ge=0, description="cap on the cooldown")
    stale_after: float | None = Field(
        None, gt=0, description="seconds; newest candle older is stale (null = 2 × timeframe)"
    )
    stale_polls: int = Field(
        3, ge=1, description="same candle this many polls after a new one was due is stale"
    )
    max_iterations: int | None = Field(None, ge=1, description="null = until stopped")
    session: str = Field("default", min_length=1, max_length=64, description="resume key")
    resume: bool = Field(True, description="continue the previous run of this session")
    log_orders: bool = Field(True, description="an order event per order")
    record_log_dir: str | None = Field(
        None,
        description="write-ahead log of the session's records (record_log.py); null = next "
        "to the journal's spill file",
    )
    record_flush_timeout: float = Field(
        10.0, ge=0, description="at stop, wait this long for held records to reach the DB"
    )
    record: RecordSettings = Field(default_factory=RecordSettings)

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


class LoopFailed(RuntimeError):
    """Too many consecutive failed iterations."""


class _Timer:
    """Time spent waiting on the exchange, so loop overhead can be told apart from it."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0

        return timed


class _TimedExecutor:
    def __init__(self, inner: OrderExecutor, timer: _Timer) -> None:
        self.market_order = timer.wrap(inner.market_order)
        self.find_order = timer.wrap(inner.find_order)
        self.balances = timer.wrap(inner.balances)
        self.last_price = timer.wrap(inner.last_price)
        self.amount_to_precision = inner.amount_to_precision
        self.min_notional = inner.min_notional


class LiveEngine(Node[LiveEngineConfig]):
    """See the module docstring."""

    def __init__(
        self,
        config: NodeConfig,
        ctx: RunContext,
        exchange: Any,
        strategy: Strategy,
        db: Any = None,
        **needs: Any,
    ) -> None:
        super().__init__(config, ctx)
        self.feed: MarketFeed = exchange
        self.strategy = strategy
        self.db = db
        self.timer = _Timer()
        self.recorder: LiveRecorder | None = (
            LiveRecorder(db, ctx) if db is not None and self.config.record.enabled else None
        )
        self.fill_model = FillModel(self.config.fee, self.config.slippage)
        self.risk = RiskSettings(
            self.config.allow_shorts, self.config.max_position, self.config.position_size
        )
        self.portfolio = Portfolio(self.config.initial_balance)
        self.limits = RiskLimits(self.config.max_drawdown, self.config.max_daily_loss)
        self.path: DecisionPath = PaperDecisionPath(
            self.portfolio,
            self.fill_model,
            self.risk,
            run_id=ctx.run_id,
            log_orders=self.config.log_orders,
        )
        self.executor: OrderExecutor | None = None
        self.previous: PreviousSession | None = None
        self.peak_equity = self.config.initial_balance
        self.initial_balance = self.config.initial_balance
        self.last_bar: pd.Timestamp | None = None
        self.bar_index = 0
        self.iterations = 0
        self.failures = 0
        self.last_error: str | None = None
        self.stale = False
        self.stale_reason: str | None = None
        self._newest: pd.Timestamp | None = None
        self._newest_close_ms: int | None = None
        self._same_polls = 0
        self._warming_logged = False
        self._behind_logged = False
        self._written: dict[int, str] = {}
        self._order_watermark = 0
        self._inflight: dict[int, dict[str, Any]] = {}
        self._unregister: list[Callable[[], None]] = []
        self._heartbeat_writer: HeartbeatWriter | None = None
        self.last_equity = self.config.initial_balance
        self.stats: deque[tuple[float, float]] = deque(maxlen=100_000)
        """(iteration seconds, of which waiting on the exchange) per iteration."""
        from atb.data.loader import timeframe_delta

        delta = timeframe_delta(ctx.timeframe)
        self.tf_ms = int(delta.total_seconds() * 1000) if delta is not None else 0
        self.stale_after = self.config.stale_after or (
            2 * self.tf_ms / 1000 if self.tf_ms else None
        )
        self._fetch = self.timer.wrap(self.feed.fetch_candles)

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        cfg, ctx = self.config, self.ctx
        if not isinstance(self.feed, MarketFeed):
            raise TypeError(f"exchange node {type(self.feed).__name__} is not a market feed")
        if cfg.trading == "live":
            if not (
                isinstance(self.feed, OrderExecutor)
                and getattr(getattr(self.feed, "config", None), "trading", False)
            ):
                raise TypeError("mode=live needs a ccxt exchange with exchange.trading=true")
            self.executor = _TimedExecutor(self.feed, self.timer)
            assert self.executor is not None
            self.path = LiveDecisionPath(
                self.portfolio,
                self.fill_model,
                self.risk,
                self.executor,
                run_id=ctx.run_id,
                on_submit=self._on_submit,
                on_settle=self._on_settle,
                log_orders=cfg.log_orders,
            )
        if self.recorder is not None:
            log_dir = record_log_dir(cfg.record_log_dir, self.db, ctx)
            replay_orphans(self.db.engine, log_dir)  # a dead session's records first
        if self.recorder is not None and cfg.resume:
            self.previous = self.recorder.find_previous(self.strategy.name, cfg.session)
        if self.previous is not None:
            self._restore(self.previous.state)
            resume_after = getattr(self.feed, "resume_after", None)
            if self.last_bar is not None and callable(resume_after):
                # A replay restarts at its configured start: continue where the session
                # left off instead of polling bars it has already processed.
                resume_after(self.last_bar)
        elif self.executor is not None:
            _, quote_free = self.executor.balances()
            # Never trade more than the exchange holds, nor more than the user allotted.
            self._set_cash(min(cfg.initial_balance, quote_free))
            if quote_free < cfg.initial_balance:
                log_engine_event(
                    "balance_adjustment",
                    level="WARNING",
                    reason="the exchange holds less quote currency than live.initial_balance",
                    configured=cfg.initial_balance,
                    exchange_free=quote_free,
                    balance=self.portfolio.balance,
                )
        if self.recorder is not None:
            live_path = self.path if isinstance(self.path, LiveDecisionPath) else None
            self.recorder.exchange_ids = live_path.exchange_ids if live_path else {}
            self.recorder.error_codes = live_path.error_codes if live_path else {}
            self.recorder.begin(
                strategy=self.strategy.name,
                parameters=self.strategy.parameters(),
                data_fingerprint=None,
                data_source=_source(self.feed.describe()),
                data_start=None,
                data_end=None,
                bars=None,
            )
            self.recorder.open_log(log_dir, on_error=_record_error)
            if self.previous is not None:
                self.recorder.retire_previous(self.previous)
        if self.previous is not None:
            self._reconcile_previous(self.previous)
            self._compare_parameters(self.previous)
        if self.executor is not None:
            self._check_holdings()
        self._persist_state()
        self._register_probes()
        _metrics.set_run_labels(
            mode=ctx.mode, strategy=self.strategy.name, symbol=ctx.symbol, run_id=ctx.run_id
        )

    def stop(self) -> None:
        for unregister in self._unregister:
            unregister()
        self._unregister = []

    def run(self) -> dict[str, Any]:
        status, error = "failed", None
        try:
            reason = self._loop()
            status = "stopped" if reason == "signal" else "finished"
            return self.summary(reason)
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            self.ctx.probes.heartbeat.stop(status)
            if self._heartbeat_writer is not None:
                self._heartbeat_writer.stop()
                self._heartbeat_writer = None
            self._finish(status, error)

    # -- the loop -----------------------------------------------------------------------
    def _loop(self) -> str:
        cfg, ctx = self.config, self.ctx
        self.ctx.probes.heartbeat.start(interval=cfg.check_interval)
        if self.recorder is not None:
            # Other processes (the monitoring dashboard) see the pulse through the database.
            self._heartbeat_writer = HeartbeatWriter(
                self.db.engine, ctx.run_id, self.ctx.probes.heartbeat
            )
            self._heartbeat_writer.start()
        feed = self.feed.describe()
        log_engine_event(
            "engine_start",
            run_id=ctx.run_id,
            mode=ctx.mode,
            trading=cfg.trading,
            strategy=self.strategy.name,
            symbol=ctx.symbol,
            timeframe=ctx.timeframe,
            exchange=feed.get("exchange"),
            sandbox=feed.get("sandbox"),
            check_interval=cfg.check_interval,
            balance=self.portfolio.balance,
            resumed_from=self.previous.run_id if self.previous else None,
            open_position=self.portfolio.signed_qty or None,
        )
        while True:
            if ctx.stopping:
                return "signal"
            if cfg.max_iterations is not None and self.iterations >= cfg.max_iterations:
                return "max_iterations"
            t0 = time.perf_counter()
            net0 = self.timer.seconds
            ok = self._iteration()
            self.iterations += 1
            elapsed = time.perf_counter() - t0
            self.stats.append((elapsed, self.timer.seconds - net0))
            _metrics.record_iteration(elapsed)
            if ok:
                self.failures = 0
                wait = cfg.check_interval
            else:
                self.failures += 1
                if self.failures >= cfg.max_consecutive_failures:
                    log_engine_event(
                        "engine_failed",
                        level="ERROR",
                        message=f"stopping: {self.failures} consecutive failed iterations "
                        f"(last error: {self.last_error})",
                        failures=self.failures,
                        last_error=self.last_error,
                    )
                    raise LoopFailed(
                        f"{self.failures} consecutive failed iterations; "
                        f"last error: {self.last_error}"
                    )
                wait = min(cfg.cooldown * 2 ** (self.failures - 1), cfg.cooldown_max)
                self.ctx.probes.heartbeat.expect(wait)  # a cooldown is not a stall
                log_engine_event(
                    "cooldown",
                    level="WARNING",
                    failures=self.failures,
                    of=cfg.max_consecutive_failures,
                    wait_s=wait,
                    last_error=self.last_error,
                )
            if ok and self.feed.exhausted and not ctx.stopping:
                log_data_event(
                    "feed_exhausted", exchange=feed.get("exchange"), last_bar=_iso(self.last_bar)
                )
                return "feed_exhausted"
            if cfg.max_iterations is not None and self.iterations >= cfg.max_iterations:
                return "max_iterations"
            if ctx.stop_event.wait(wait):
                return "signal"

    def _iteration(self) -> bool:
        try:
            if isinstance(self.path, LiveDecisionPath) and self.path.unconfirmed:
                for order in self.path.reconcile():
                    self._write_orders([order])
            frame = self._fetch(self.history)
        except (ExchangeUnavailable, MalformedResponse) as exc:
            self.last_error = str(exc)[:500]
            log_data_event(
                "data_fetch_failed",
                level="ERROR",
                error=self.last_error,
                failures=self.failures + 1,
            )
            self.ctx.probes.heartbeat.fail(self.last_error)
            return False
        except Exception as exc:  # a bug must not kill a live session on the first bar
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            log_engine_event("iteration_failed", level="ERROR", error=self.last_error, exc_info=exc)
            self.ctx.probes.heartbeat.fail(self.last_error)
            return False
        if frame.empty:
            self.last_error = "the exchange returned no closed candles"
            log_data_event(
                "no_data", level="WARNING", symbol=self.ctx.symbol, timeframe=self.ctx.timeframe
            )
            self.ctx.probes.heartbeat.fail(self.last_error)
            return False
        now_ms = self.feed.now_ms()
        newest = frame.index[-1]
        self.ctx.probes.heartbeat.beat(
            iteration=self.iterations + 1, newest_candle=newest.isoformat(), stale=self.stale
        )
        try:
            if self._check_stale(newest, now_ms):
                return True
            self._process(frame, now_ms)
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            log_engine_event("iteration_failed", level="ERROR", error=self.last_error, exc_info=exc)
            self.ctx.probes.heartbeat.fail(self.last_error)
            return False
        return True

    def _check_stale(self, newest: pd.Timestamp, now_ms: int) -> bool:
        close_ms = int(newest.value // 1_000_000) + self.tf_ms
        age = (now_ms - close_ms) / 1000
        if self._newest is not None and newest == self._newest and now_ms >= close_ms + self.tf_ms:
            self._same_polls += 1
        elif self._newest is None or newest != self._newest:
            self._same_polls = 0
        self._newest, self._newest_close_ms = newest, close_ms
        _metrics.set_candle_age(max(age, 0.0))
        reason = None
        if self.stale_after is not None and age > self.stale_after:
            reason = f"newest candle closed {age:.0f} s ago (max {self.stale_after:g} s)"
        elif self._same_polls >= self.config.stale_polls:
            reason = f"same newest candle for {self._same_polls} polls after a new one was due"
        if reason is not None:
            if not self.stale:
                log_data_event(
                    "stale_data",
                    level="WARNING",
                    symbol=self.ctx.symbol,
                    timeframe=self.ctx.timeframe,
                    newest=newest.isoformat(),
                    age_s=round(age, 3),
                    polls=self._same_polls,
                    reason=reason,
                    note="not trading until fresh candles arrive",
                )
            self.stale, self.stale_reason = True, reason
            _metrics.set_data_stale(True)
            return True
        if self.stale:
            log_data_event(
                "data_recovered",
                symbol=self.ctx.symbol,
                newest=newest.isoformat(),
                age_s=round(age, 3),
            )
        self.stale, self.stale_reason = False, None
        _metrics.set_data_stale(False)
        return False

    def _process(self, frame: pd.DataFrame, now_ms: int) -> None:
        index = frame.index
        if self.last_bar is None:
            start = len(frame) - 1  # a fresh session acts from the newest closed bar on
        else:
            start = int(index.searchsorted(self.last_bar, side="right"))
            if start >= len(frame) and index[-1] < self.last_bar and not self._behind_logged:
                # Never loop on nothing silently: the feed serves bars the session has
                # already processed (a feed that restarted, a clock behind the session).
                self._behind_logged = True
                log_data_event(
                    "feed_behind_session",
                    level="WARNING",
                    newest=index[-1].isoformat(),
                    last_processed=_iso(self.last_bar),
                    note="nothing is traded until the feed passes the session's last bar; "
                    "live.resume=false starts a new session",
                )
        warmup = self.strategy.warmup
        stamps = index.asi8  # type: ignore[attr-defined]  # pandas-stubs lacks asi8
        values = frame[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)
        for j in range(start, len(frame)):
            if self.ctx.stopping:
                break
            o, h, low, c, v = values[j].tolist()
            bar = Bar(self.bar_index, utc_datetime(int(stamps[j])), o, h, low, c, v)
            close_ms = int(stamps[j] // 1_000_000) + self.tf_ms
            fresh = self.stale_after is None or (now_ms - close_ms) / 1000 <= self.stale_after
            signals: SignalFrame | None = None
            if fresh and j >= warmup and not self._blocked():
                signals = self.strategy.signals(frame.iloc[j - warmup : j + 1])
            elif j < warmup and not self._warming_logged:
                self._warming_logged = True
                log_engine_event(
                    "warming_up",
                    level="WARNING",
                    have=j + 1,
                    need=warmup + 1,
                    note="raise live.history to fetch more candles",
                )
            signal = signal_at(signals, len(signals) - 1) if signals is not None else None
            step = self.path.on_bar(bar, None if signal is None or signal.is_hold else signal)
            if isinstance(self.path, LiveDecisionPath):
                self.path.execute_pending(bar, step)
            self.last_bar = index[j]
            self.bar_index += 1
            self._record_bar(bar, step, signals)

    def _blocked(self) -> bool:
        """No new decision while a live order's outcome is unknown: it could duplicate it."""
        return isinstance(self.path, LiveDecisionPath) and bool(self.path.unconfirmed)

    # -- records ------------------------------------------------------------------------
    def _record_bar(self, bar: Bar, step: Step, signals: SignalFrame | None) -> None:
        p = self.portfolio
        equity = p.equity(bar.close)
        self.last_equity = equity
        self.peak_equity = max(self.peak_equity, equity)
        drawdown = 1.0 - equity / self.peak_equity if self.peak_equity > 0 else 0.0
        self.limits.check(bar.time, equity, self.peak_equity)
        if step.decision is not None and step.decision.action != "none":
            # (the decision path itself reports decisions that do nothing)
            d = step.decision
            log_decision_event(
                "decision",
                time=d.time.isoformat(),
                signal=d.direction,
                confidence=d.confidence,
                action=d.action,
                size=d.size,
                reason=d.reason,
                price=d.price,
            )
        for trade in step.trades:
            log_engine_event(
                "close_position",
                position_no=trade.position_id,
                side="long" if trade.side > 0 else "short",
                qty=trade.qty,
                exit_price=trade.exit_price,
                pnl=trade.pnl,
                exit_reason=trade.exit_reason,
            )
        for order in step.fills:
            if order.kind == "entry" and p.position is not None:
                log_engine_event(
                    "open_position",
                    position_no=p.position.id,
                    side="long" if p.position.side > 0 else "short",
                    qty=p.position.qty,
                    entry_price=p.position.entry_price,
                    stop_price=p.position.stop_price,
                    take_price=p.position.take_price,
                    reason=order.reason,
                )
        _metrics.set_account(
            balance=p.cash,
            equity=equity,
            drawdown=drawdown,
            open_positions=int(p.position is not None),
        )
        if not isinstance(self.path, LiveDecisionPath):
            for order in step.fills:
                _metrics.record_order(order.status)
        for order in step.fills:
            if order.status == "filled":
                _metrics.record_fill(order.fee)
        for trade in step.trades:
            _metrics.record_realized_pnl(trade.pnl)
        if self.recorder is None:
            return
        rec = self.config.record
        positions = {pos.id: pos for pos in self._touched_positions(step)}
        prediction = _prediction_row(signals, bar.time) if rec.predictions else None
        self.recorder.write_bar(
            orders=self._changed_orders(),
            positions=list(positions.values()),
            trades=list(step.trades),
            decision=step.decision if rec.decisions else None,
            account={
                "time": bar.time,
                "balance": p.balance,
                "equity": equity,
                "drawdown": drawdown,
                "position_qty": p.signed_qty,
                "open_positions": int(p.position is not None),
                "exposure": exposure_ratio(p.signed_qty, bar.close, equity),
            }
            if rec.account_history
            else None,
            prediction=prediction,
            mark=bar.close,
            state=self.state(),
            metrics=self.metrics(),
        )

    def _touched_positions(self, step: Step) -> list[Position]:
        touched = [
            pos
            for pos in self.portfolio.positions
            if any(o.position_id == pos.id for o in step.fills)
        ]
        if self.portfolio.position is not None:
            touched.append(self.portfolio.position)  # re-marked every bar
        return touched

    def _changed_orders(self) -> list[Order]:
        orders = self.path.orders
        changed = [
            o for o in orders[self._order_watermark :] if self._written.get(o.id) != o.status
        ]
        for o in changed:
            self._written[o.id] = o.status
        while (
            self._order_watermark < len(orders)
            and orders[self._order_watermark].status != "pending"
            and self._written.get(orders[self._order_watermark].id) is not None
        ):
            self._order_watermark += 1
        if isinstance(self.recorder, LiveRecorder) and not isinstance(self.path, LiveDecisionPath):
            for o in changed:
                self.recorder.exchange_ids[o.id] = paper_order_id(self.ctx.run_id, o.id)
        return changed

    def _write_orders(self, orders: list[Order]) -> None:
        for o in orders:
            self._written[o.id] = o.status
        if self.recorder is not None:
            self.recorder.write_orders(orders, self.state(), self.metrics())

    def _on_submit(self, order: Order, client_order_id: str) -> None:
        self._inflight[order.id] = {
            "order_no": order.id, "client_order_id": client_order_id, "side": order.side,
            "kind": order.kind, "reason": order.reason, "size": order.size,
            "stop_loss": order.stop_loss, "take_profit": order.take_profit,
            "created": order.created.isoformat(),
        }  # fmt: skip
        self._write_orders([order])

    def _on_settle(self, order: Order) -> None:
        self._inflight.pop(order.id, None)
        self._write_orders([order])

    def _persist_state(self) -> None:
        if self.recorder is None:
            return
        pos = self.portfolio.position
        self.recorder.write_bar(
            orders=self._changed_orders(),
            positions=[pos] if pos is not None else [],
            trades=[],
            decision=None,
            account=None,
            prediction=None,
            mark=pos.entry_price if pos is not None else None,
            state=self.state(),
            metrics=self.metrics(),
        )

    def state(self) -> SessionState:
        p = self.portfolio
        return SessionState(
            cash=p.cash,
            balance=p.balance,
            initial_balance=self.initial_balance,
            peak_equity=self.peak_equity,
            last_bar=None if self.last_bar is None else self.last_bar.to_pydatetime(),
            position=position_json(p.position) if p.position is not None else None,
            inflight=list(self._inflight.values()),
        )

    def metrics(self) -> dict[str, Any]:
        p = self.portfolio
        return {
            "trading": self.config.trading,
            "session": self.config.session,
            "iterations": self.iterations,
            "bars": self.bar_index,
            "num_trades": len(p.trades),
            "initial_balance": self.initial_balance,
            "balance": p.balance,
            "cash": p.cash,
            "final_equity": self.last_equity,
            "total_return": self.last_equity / self.initial_balance - 1.0,
            "fees_paid": p.fees_paid,
            "max_drawdown_seen": 1.0 - self.last_equity / self.peak_equity
            if self.peak_equity > 0
            else 0.0,
            "resumed_from": self.previous.run_id if self.previous else None,
            "stale": self.stale,
        }

    def _finish(self, status: str, error: str | None) -> None:
        # Paper orders waiting for the next open cannot fill once the session is gone.
        if not isinstance(self.path, LiveDecisionPath):
            for order in self.path.pending:
                order.status = "cancelled"
                order.note = "session stopped before the next bar"
            self.path.pending = []
        log_engine_event(
            "engine_stop",
            level="INFO" if status != "failed" else "ERROR",
            status=status,
            iterations=self.iterations,
            bars=self.bar_index,
            trades=len(self.portfolio.trades),
            balance=self.portfolio.balance,
            equity=self.last_equity,
            open_position=self.portfolio.signed_qty or None,
            error=error,
        )
        if self.recorder is None:
            return
        try:
            changed = self._changed_orders()
            if changed:
                self.recorder.write_orders(changed, self.state(), self.metrics())
            self.recorder.close(status, self.metrics(), self.state(), error)
            self.recorder.close_log(self.config.record_flush_timeout)
        except Exception as exc:  # the original error, if any, matters more
            log_engine_event(
                "run_record_failed", level="ERROR", run_id=self.ctx.run_id, error=str(exc)
            )

    def summary(self, reason: str) -> dict[str, Any]:
        return {"run_id": self.ctx.run_id, "reason": reason, **self.metrics()}

    # -- resume -------------------------------------------------------------------------
    def _set_cash(self, cash: float) -> None:
        p = self.portfolio
        p.cash = p.balance = p.initial_balance = cash
        self.initial_balance = self.peak_equity = self.last_equity = cash

    def _restore(self, state: SessionState) -> None:
        p = self.portfolio
        p.initial_balance = self.initial_balance = state.initial_balance
        p.cash, p.balance = state.cash, state.balance
        self.peak_equity = state.peak_equity
        self.last_bar = pd.Timestamp(state.last_bar) if state.last_bar is not None else None
        if state.position:
            pos = _position_from_json(state.position, self._bars_since)
            p.position = pos
            p.positions.append(pos)
            p._next_position = pos.id + 1
        self.last_equity = (
            p.balance if p.position is None else (p.cash + p.signed_qty * p.position.entry_price)
        )
        log_engine_event(
            "session_resumed",
            previous_run=self.previous.run_id if self.previous else None,
            previous_status=self.previous.status if self.previous else None,
            cash=p.cash,
            balance=p.balance,
            open_position=p.signed_qty or None,
            last_bar=_iso(self.last_bar),
            inflight=len(state.inflight),
        )

    def _bars_since(self, when: datetime) -> int:
        if not self.tf_ms:
            return 0
        return -int((datetime.now(UTC) - when).total_seconds() * 1000 // self.tf_ms)

    def _reconcile_previous(self, previous: PreviousSession) -> None:
        """Settle the orders the previous process sent but never saw answered."""
        if self.recorder is None:
            return
        inflight = settle_orphans(self.recorder, previous, self.path, self.ctx.run_id)
        if not inflight or not isinstance(self.path, LiveDecisionPath):
            return
        for item in inflight:
            cid = str(item["client_order_id"])
            found = self.path.executor.find_order(cid)
            if found is None or found.status != "filled" or found.qty <= 0:
                self.recorder.settle_previous_order(
                    previous.run_id,
                    int(item["order_no"]),
                    "cancelled",
                    f"client_order_id={cid}; never filled on the exchange (checked at resume)",
                )
                log_engine_event("order_reconciled", client_order_id=cid, outcome="not_filled")
                continue
            held = self.portfolio.position is not None
            if (item["kind"] == "exit") != held:
                # The resumed state already reflects this fill: record it, book nothing.
                self.recorder.settle_previous_order(
                    previous.run_id,
                    int(item["order_no"]),
                    "filled",
                    f"client_order_id={cid}; filled on the exchange, already in the resumed "
                    "state (not booked again)",
                    qty=found.qty,
                    price=found.price,
                    exchange_order_id=found.exchange_order_id,
                )
                continue
            order = self.path._new_order(
                datetime.now(UTC), int(item["side"]), item["kind"], item["reason"]
            )
            order.size = float(item.get("size") or 0.0)
            order.stop_loss, order.take_profit = item.get("stop_loss"), item.get("take_profit")
            self.path.client_ids[order.id] = cid
            self.path._apply(order, found, self.bar_index, Step(0.0, 0.0, 0.0, 0.0))
            self.recorder.settle_previous_order(
                previous.run_id,
                int(item["order_no"]),
                "filled",
                f"client_order_id={cid}; filled on the exchange, booked by run {self.ctx.run_id}",
                qty=found.qty,
                price=found.price,
                exchange_order_id=found.exchange_order_id,
            )
            log_engine_event(
                "order_reconciled",
                client_order_id=cid,
                outcome="filled",
                side=order.side_name,
                qty=found.qty,
                price=found.price,
            )

    def _compare_parameters(self, previous: PreviousSession) -> None:
        """A resumed session whose strategy settings changed says so (STRATEGY_CHANGE)."""
        if self.recorder is None:
            return
        before = self.recorder.parameters_of(previous.run_id)
        now = clean_json(self.strategy.parameters())
        if before is None or before == now:
            return
        changed = {
            k: {"before": before.get(k), "now": now.get(k)}
            for k in sorted(set(before) | set(now))
            if before.get(k) != now.get(k)
        }
        log_engine_event(
            "strategy_change",
            level="WARNING",
            message=f"resumed session {previous.run_id} with changed strategy parameters: "
            + ", ".join(changed),
            previous_run=previous.run_id,
            changed=changed,
        )

    def _check_holdings(self) -> None:
        """Live: the exchange's base balance must cover the position we believe we hold."""
        assert self.executor is not None
        pos = self.portfolio.position
        base_total, _ = self.executor.balances()
        if pos is not None and base_total + 1e-12 < pos.qty * 0.999:
            log_engine_event(
                "position_mismatch",
                level="ERROR",
                recorded_qty=pos.qty,
                exchange_qty=base_total,
                note="the exchange holds less than the recorded position: trading on with "
                "what it holds",
            )
            if base_total <= 0:
                self.portfolio.position = None
                self.portfolio.cash = self.portfolio.balance
            else:
                pos.qty = base_total
            log_engine_event(
                "balance_adjustment",
                level="WARNING",
                reason="position reconciled against the exchange's base balance",
                recorded_qty=pos.qty if base_total > 0 else 0.0,
                exchange_qty=base_total,
            )

    # -- probes -------------------------------------------------------------------------
    def _register_probes(self) -> None:
        self._unregister.append(self.ctx.probes.register("data", self._data_state))
        self._unregister.append(self.ctx.probes.register("exchange", self._exchange_state))

    def _data_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "symbol": self.ctx.symbol,
            "timeframe": self.ctx.timeframe,
            "source": self.feed.describe().get("exchange"),
            "stale": self.stale,
            "stale_reason": self.stale_reason,
            "polls": self.iterations,
        }
        if self._newest_close_ms is not None and self._newest is not None:
            state["newest_candle_time"] = self._newest.isoformat()
            state["newest_candle_age_seconds"] = max(
                0.0, (self.feed.now_ms() - self._newest_close_ms) / 1000
            )
        if self.stale:
            state["status"] = "degraded"
        return state

    def _exchange_state(self) -> dict[str, Any]:
        state = dict(self.feed.state())
        state["loop_consecutive_failures"] = self.failures
        state["loop_last_error"] = self.last_error
        state["max_consecutive_failures"] = self.config.max_consecutive_failures
        state["status"] = "ok" if self.failures == 0 else "degraded"
        return state

    @property
    def history(self) -> int:
        return self.config.history or min(self.strategy.warmup + 6, 1000)


def _source(describe: dict[str, Any]) -> str:
    parts = [str(describe.get("exchange"))]
    if describe.get("sandbox"):
        parts.append("sandbox")
    if describe.get("url"):
        parts.append(str(describe["url"]))
    if describe.get("file"):
        parts.append(str(describe["file"]))
    return " ".join(parts)


def _iso(value: pd.Timestamp | datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _position_from_json(data: dict[str, Any], bars_since: Callable[[datetime], int]) -> Position:
    entry_time = pd.Timestamp(data["entry_time"])
    if entry_time.tzinfo is None:
        entry_time = entry_time.tz_localize("UTC")
    when = entry_time.to_pydatetime()
    return Position(
        id=1,
        side=int(data["side"]),
        qty=float(data["qty"]),
        entry_time=when,
        entry_price=float(data["entry_price"]),
        entry_fee=float(data.get("entry_fee") or 0.0),
        entry_bar=bars_since(when),
        stop_price=data.get("stop_price"),
        take_price=data.get("take_price"),
    )


def _prediction_row(signals: SignalFrame | None, time_: datetime) -> dict[str, Any] | None:
    if signals is None or signals.predictions is None or not len(signals.predictions):
        return None
    row = signals.predictions.iloc[-1]
    when = pd.Timestamp(row.get("time", time_))
    if when.tzinfo is None:
        when = when.tz_localize("UTC")

    def num(name: str) -> float | None:
        value = row.get(name)
        if value is None:
            return None
        try:
            f = float(value)
        except (TypeError, ValueError):
            return None
        return None if f != f else f

    direction = num("direction")
    model_id = row.get("model_id")
    return {
        "time": when.to_pydatetime(),
        "predicted_price": num("predicted_price"),
        "r": num("r"),
        "confidence": num("confidence"),
        "direction": None if direction is None else int(direction),
        "model_id": None if model_id in (None, "") else str(model_id),
    }


__all__ = ["LiveEngine", "LiveEngineConfig", "LoopFailed", "OrderResult"]
