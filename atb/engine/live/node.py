"""The `live` node: assembles a session (execution, account, loop, recording) and runs it.

start: pick the execution (paper: simulated fills; live: the exchange, which must be a
ccxt exchange with `exchange.trading=true`), replay a dead session's write-ahead record
log, resume the previous session, begin the run's records, settle orphaned orders, check
the exchange's holdings, persist the first state snapshot and publish the probes.
run: the loop (loop.py) until a signal, `max_iterations` or the feed's end; then the
execution finishes, the heartbeat stops and the run is closed as finished, stopped
(SIGINT/SIGTERM) or failed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from atb.engine.decision import DecisionPath
from atb.engine.execution import Execution
from atb.engine.heartbeat_store import HeartbeatWriter
from atb.engine.live.account import PreviousSession, SessionAccount
from atb.engine.live.config import LiveEngineConfig
from atb.engine.live.exchange_execution import ExchangeExecution, ExchangeTimer, TimedExecutor
from atb.engine.live.freshness import Freshness
from atb.engine.live.loop import SessionLoop
from atb.engine.live.recorder import LiveRecorder
from atb.engine.live.recording import SessionRecording
from atb.engine.live.resume import (
    compare_parameters,
    find_orphans,
    record_error,
    record_log_dir,
    restore,
    settle_orphans,
)
from atb.engine.live.simulated import PaperExecution
from atb.engine.record_log import replay_orphans
from atb.engine.risk_limits import RiskLimits
from atb.exchange.base import MarketFeed, OrderExecutor
from atb.health import metrics as _metrics
from atb.logging.events import log_engine_event
from atb.runtime.clock import SYSTEM_CLOCK, Clock
from atb.runtime.context import RunContext
from atb.runtime.node import Node
from atb.strategies.base import Strategy


def make_execution(
    config: LiveEngineConfig, feed: Any, run_id: str, timer: ExchangeTimer
) -> Execution:
    """paper: simulated fills; live: orders through the exchange node."""
    if config.trading == "paper":
        return PaperExecution(run_id)
    if not (
        isinstance(feed, OrderExecutor) and getattr(getattr(feed, "config", None), "trading", False)
    ):
        raise TypeError("mode=live needs a ccxt exchange with exchange.trading=true")
    return ExchangeExecution(TimedExecutor(feed, timer), run_id)


class LiveEngine(Node[LiveEngineConfig]):
    """See the module docstring."""

    def __init__(
        self,
        config: LiveEngineConfig,
        ctx: RunContext,
        exchange: Any,
        strategy: Strategy,
        db: Any = None,
        clock: Clock = SYSTEM_CLOCK,
        **needs: Any,
    ) -> None:
        super().__init__(config, ctx)
        self.feed: MarketFeed = exchange
        self.strategy = strategy
        self.db = db
        self.clock = clock
        self.timer = ExchangeTimer()
        self.account = SessionAccount(config.initial_balance)
        self.portfolio = self.account.portfolio
        self.path: DecisionPath | None = None
        self.recorder: LiveRecorder | None = (
            LiveRecorder(db, ctx) if db is not None and config.record.enabled else None
        )
        self.previous: PreviousSession | None = None
        self.loop: SessionLoop | None = None
        self.recording: SessionRecording | None = None
        self._unregister: list[Callable[[], None]] = []
        self._heartbeat_writer: HeartbeatWriter | None = None
        from atb.data.loader import timeframe_delta

        delta = timeframe_delta(ctx.timeframe)
        tf_ms = int(delta.total_seconds() * 1000) if delta is not None else 0
        self.freshness = Freshness(
            tf_ms=tf_ms,
            stale_after=config.stale_after or (2 * tf_ms / 1000 if tf_ms else None),
            stale_polls=config.stale_polls,
        )

    @property
    def stats(self) -> Any:
        """(iteration seconds, of which waiting on the exchange) per iteration."""
        return self.loop.stats if self.loop is not None else []

    @property
    def iterations(self) -> int:
        return self.loop.iterations if self.loop is not None else 0

    @property
    def bar_index(self) -> int:
        """Bars processed by this session."""
        return self.account.bar_index

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        cfg, ctx = self.config, self.ctx
        if not isinstance(self.feed, MarketFeed):
            raise TypeError(f"exchange node {type(self.feed).__name__} is not a market feed")
        execution = make_execution(cfg, self.feed, ctx.run_id, self.timer)
        path = DecisionPath(
            self.portfolio,
            cfg.fill_model(),
            cfg.risk_settings(),
            log_orders=cfg.log_orders,
            execution=execution,
        )
        self.path = path
        recording = SessionRecording(self.recorder, cfg.record, self.account, path, self.metrics)
        self.recording = recording
        execution.on_change = recording.write_orders
        self.loop = SessionLoop(
            cfg,
            ctx,
            feed=self.feed,
            strategy=self.strategy,
            path=path,
            account=self.account,
            freshness=self.freshness,
            recording=recording,
            limits=RiskLimits(cfg.max_drawdown, cfg.max_daily_loss),
            heartbeat=self.ctx.probes.heartbeat,
            clock=self.clock,
            timer=self.timer,
        )
        recorder = self.recorder
        runs: list[tuple[str, str, Any]] = []
        if recorder is not None:
            log_dir = record_log_dir(cfg.record_log_dir, self.db, ctx)
            replay_orphans(self.db.engine, log_dir)  # a dead session's records first
            runs = recorder.session_runs(self.strategy.name, cfg.session)
            if cfg.resume:
                self.previous = recorder.find_previous(self.strategy.name, cfg.session)
        if self.previous is not None:
            restore(self.account, self.previous, self.freshness.tf_ms)
            resume_after = getattr(self.feed, "resume_after", None)
            if self.account.last_bar is not None and callable(resume_after):
                # A replay restarts at its configured start: continue where the session
                # left off instead of polling bars it has already processed.
                resume_after(self.account.last_bar)
        else:
            self.account.set_cash(execution.starting_cash(cfg.initial_balance))
        if recorder is not None:
            recorder.begin(
                strategy=self.strategy.name,
                parameters=self.strategy.parameters(),
                data_fingerprint=None,
                data_source=_source(self.feed.describe()),
                data_start=None,
                data_end=None,
                bars=None,
            )
            recorder.open_log(log_dir, on_error=record_error)
            if self.previous is not None:
                recorder.retire_previous(self.previous)
            recorder.close_interrupted(
                [run_id for run_id, status, _ in runs if status == "running"],
                f"found by run {ctx.run_id}",
            )
            orphans = find_orphans(recorder, runs, self.previous)
            settle_orphans(
                recorder,
                execution,
                orphans,
                books_of=self.previous.run_id if self.previous is not None else None,
                run_id=ctx.run_id,
            )
            if self.previous is not None:
                compare_parameters(recorder, self.previous, self.strategy.parameters())
        execution.check_holdings()
        recording.persist_state()
        self._register_probes()
        _metrics.set_run_labels(
            mode=ctx.mode, strategy=self.strategy.name, symbol=ctx.symbol, run_id=ctx.run_id
        )

    def stop(self) -> None:
        for unregister in self._unregister:
            unregister()
        self._unregister = []

    def run(self) -> dict[str, Any]:
        assert self.loop is not None
        status, error = "failed", None
        try:
            self._begin()
            reason = self.loop.run()
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

    def _begin(self) -> None:
        cfg, ctx = self.config, self.ctx
        self.ctx.probes.heartbeat.start(interval=cfg.check_interval, clock=self.clock)
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

    def _finish(self, status: str, error: str | None) -> None:
        assert self.path is not None and self.recording is not None
        self.path.execution.finish()
        log_engine_event(
            "engine_stop",
            level="INFO" if status != "failed" else "ERROR",
            status=status,
            iterations=self.iterations,
            bars=self.account.bar_index,
            trades=len(self.portfolio.trades),
            balance=self.portfolio.balance,
            equity=self.account.last_equity,
            open_position=self.portfolio.signed_qty or None,
            error=error,
        )
        try:
            self.recording.close(status, error, self.config.record_flush_timeout)
        except Exception as exc:  # the original error, if any, matters more
            log_engine_event(
                "run_record_failed", level="ERROR", run_id=self.ctx.run_id, error=str(exc)
            )

    # -- what the session reports -------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        return {
            "trading": self.config.trading,
            "session": self.config.session,
            "iterations": self.iterations,
            **self.account.figures(),
            "resumed_from": self.previous.run_id if self.previous else None,
            "stale": self.freshness.stale,
        }

    def summary(self, reason: str) -> dict[str, Any]:
        return {"run_id": self.ctx.run_id, "reason": reason, **self.metrics()}

    def _register_probes(self) -> None:
        self._unregister.append(self.ctx.probes.register("data", self._data_state))
        self._unregister.append(self.ctx.probes.register("exchange", self._exchange_state))

    def _data_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "symbol": self.ctx.symbol,
            "timeframe": self.ctx.timeframe,
            "source": self.feed.describe().get("exchange"),
            "stale": self.freshness.stale,
            "stale_reason": self.freshness.reason,
            "polls": self.iterations,
        }
        state.update(self.freshness.probe(self.feed.now_ms()))
        if self.freshness.stale:
            state["status"] = "degraded"
        return state

    def _exchange_state(self) -> dict[str, Any]:
        loop = self.loop
        state = dict(self.feed.state())
        state["loop_consecutive_failures"] = loop.failures if loop is not None else 0
        state["loop_last_error"] = loop.last_error if loop is not None else None
        state["max_consecutive_failures"] = self.config.max_consecutive_failures
        state["status"] = "ok" if state["loop_consecutive_failures"] == 0 else "degraded"
        return state


def _source(describe: dict[str, Any]) -> str:
    parts = [str(describe.get("exchange"))]
    if describe.get("sandbox"):
        parts.append("sandbox")
    if describe.get("url"):
        parts.append(str(describe["url"]))
    if describe.get("file"):
        parts.append(str(describe["file"]))
    return " ".join(parts)
