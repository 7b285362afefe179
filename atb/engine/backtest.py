"""The backtest: drive the shared decision path over history, then measure and record.

Speed comes from two things only: the strategy computes every signal in one vectorised
call, and the driver steps the decision path just on bars where something can happen
(a signal, an order waiting for the next open, a stop/take-profit level inside the bar's
range). Between those bars the account cannot change except by price, so equity is
rebuilt for every bar with numpy from the state each step returned. `skip_idle_bars=false`
steps every bar instead; the tests check both give identical results.
"""

from __future__ import annotations

import sys
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import pandas as pd
from pydantic import Field

from atb.config.base import NodeConfig
from atb.data.loader import timeframe_delta
from atb.engine.decision import DecisionPath
from atb.engine.decision_log import DecisionLog
from atb.engine.fills import FillModel, touched
from atb.engine.gc_pause import cyclic_gc_paused
from atb.engine.inputs import Bar, bars_at, utc_datetime
from atb.engine.metrics import compute_metrics, drawdown_curve
from atb.engine.orders import Order
from atb.engine.portfolio import Portfolio, Position, Trade
from atb.engine.records import RunRecorder, result_hash
from atb.engine.report import export_trades_csv, summary_table
from atb.engine.risk import RiskSettings
from atb.engine.signal_rows import SignalRows
from atb.engine.trading import TradingConfig
from atb.logging.events import log_engine_event
from atb.logging.setup import report_stream
from atb.runtime.context import RunContext
from atb.runtime.node import Node
from atb.strategies.base import SignalFrame, Strategy

if TYPE_CHECKING:
    from atb.data.node import MarketData


OHLCV = ("open", "high", "low", "close", "volume")


class BacktestConfig(TradingConfig):
    close_at_end: bool = Field(True, description="close an open position at the last close")
    skip_idle_bars: bool = Field(True, description="step only bars where something can happen")
    export_csv: Path | None = Field(None, description="write the trades to this CSV file")
    progress: Literal["auto"] | bool = Field("auto", description="auto: TTY and >= 10k bars")
    summary: bool = Field(True, description="print the summary table at the end")


@dataclass(frozen=True)
class BacktestSettings:
    initial_balance: float = 10_000.0
    fee: float = 0.001
    slippage: float = 0.0005
    risk: RiskSettings = field(default_factory=RiskSettings)
    close_at_end: bool = True
    skip_idle_bars: bool = True
    log_orders: bool = False

    @classmethod
    def from_config(cls, cfg: BacktestConfig) -> BacktestSettings:
        return cls(
            initial_balance=cfg.initial_balance,
            fee=cfg.fee,
            slippage=cfg.slippage,
            risk=cfg.risk_settings(),
            close_at_end=cfg.close_at_end,
            skip_idle_bars=cfg.skip_idle_bars,
            log_orders=cfg.log_orders,
        )


@dataclass
class BacktestResult:
    trades: list[Trade]
    orders: list[Order]
    positions: list[Position]
    decisions: DecisionLog
    signals: SignalFrame
    times: pd.DatetimeIndex
    equity: np.ndarray
    balance: np.ndarray
    qty: np.ndarray
    drawdown: np.ndarray
    metrics: dict[str, Any]
    result_hash: str
    steps: int
    """How many bars the decision path was stepped on."""
    elapsed_s: float
    open_position: Position | None = None


class Interrupted(RuntimeError):
    pass


def run_backtest(
    bars: pd.DataFrame,
    strategy: Strategy,
    settings: BacktestSettings,
    *,
    bar_seconds: float | None = None,
    progress: bool = False,
    should_stop: Callable[[], bool] | None = None,
) -> BacktestResult:
    t0 = time.perf_counter()
    n = len(bars)
    if n == 0:
        raise ValueError("no bars to backtest")
    signals = strategy.signals(bars)
    if len(signals) != n:
        raise ValueError(f"strategy '{strategy.name}' returned {len(signals)} signals for {n} bars")
    # Python scalars are pulled per stepped bar only: converting whole columns to lists
    # would cost more than the loop itself.
    ohlcv = _ohlcv(bars)
    highs_arr, lows_arr, closes_arr = ohlcv[:, 1], ohlcv[:, 2], ohlcv[:, 3]
    index = cast(pd.DatetimeIndex, bars.index)
    stamps = index.as_unit("ns").asi8  # type: ignore[attr-defined]  # pandas-stubs lacks asi8
    rows = SignalRows(signals, settings.risk)
    signal_list = rows.bars

    portfolio = Portfolio(settings.initial_balance)
    decisions = DecisionLog(stamps)
    path = DecisionPath(
        portfolio,
        FillModel(settings.fee, settings.slippage),
        settings.risk,
        log_orders=settings.log_orders,
        decisions=decisions,
    )

    skip = settings.skip_idle_bars
    # Quiet signals (signal_rows.py) are recorded in bulk instead of stepped, unless every
    # decision must also be logged one by one.
    quiet = skip and not settings.log_orders
    n_signals = len(signal_list)
    on_bar, signal_for, acting_on = path.on_bar, rows.at, rows.acting
    # With few signals, the bars they step (each signal and its fill bar) are built in one
    # pass; any other stepped bar builds its own.
    likely = rows.active[:0]
    if rows.few:
        marked = np.zeros(n, dtype=bool)
        marked[rows.active] = True
        marked[np.minimum(rows.active + 1, n - 1)] = True
        likely = np.flatnonzero(marked)
    with cyclic_gc_paused():
        bar_at = bars_at(ohlcv, stamps, likely).get
        stepped: list[int] = []
        states: list[tuple[float, float, float]] = []
        bar_progress = _progress(n) if progress else None
        done = 0
        if not skip:
            i = 0
        elif quiet:
            first = rows.next_acting(-1, 0)
            i = n if first is None else first
            rows.quiet(0, i, 0, closes_arr, decisions)
        else:
            i = signal_list[0] if n_signals else n
        # The hot loop: kept flat (no helper calls per bar) because it runs once per stepped bar.
        while i < n:
            if should_stop is not None and should_stop():
                raise Interrupted(f"stopped at bar {i} of {n} ({index[i].isoformat()})")
            bar = bar_at(i)
            if bar is None:
                o, h, low, c, v = ohlcv[i].tolist()
                bar = Bar(i, utc_datetime(int(stamps[i])), o, h, low, c, v)
            step = on_bar(bar, signal_for(i))
            stepped.append(i)
            states.append((step.cash, step.qty, step.balance))
            # Next bar on which the decision path can do anything.
            if not skip or path.pending:
                i += 1
            else:
                pos = portfolio.position
                k = bisect_right(signal_list, i)  # the next signal, whatever it decides
                if quiet:  # rows.next_acting, inlined: this runs after most steps
                    side = 0 if pos is None else pos.side
                    acting = acting_on[side]
                    j = bisect_right(acting, i)
                    upcoming = acting[j] if j < len(acting) else n
                else:
                    upcoming = signal_list[k] if k < n_signals else n
                # No order is pending here, so only a stop or take level can act sooner.
                if (
                    pos is not None
                    and upcoming > i + 1
                    and (pos.stop_price is not None or pos.take_price is not None)
                ):
                    upcoming = _first_touch(pos, highs_arr, lows_arr, i + 1, upcoming)
                if quiet and k < n_signals and signal_list[k] < upcoming:
                    rows.quiet(i + 1, upcoming, side, closes_arr, decisions)
                i = upcoming
            if bar_progress is not None:
                bar_progress.update(min(i, n) - done)
                done = min(i, n)
    open_position = path.portfolio.position
    o, h, low, c, v = ohlcv[n - 1].tolist()
    last = Bar(n - 1, utc_datetime(int(stamps[n - 1])), o, h, low, c, v)
    step = path.finish(last, close_position=settings.close_at_end)
    if stepped and stepped[-1] == n - 1:
        states[-1] = (step.cash, step.qty, step.balance)
    else:
        stepped.append(n - 1)
        states.append((step.cash, step.qty, step.balance))
    if bar_progress is not None:
        bar_progress.update(n - done)
        bar_progress.close()

    cash, qty, balance = _fill_forward(n, stepped, states, settings.initial_balance)
    equity = cash + qty * closes_arr
    if bar_seconds is None:
        bar_seconds = float(np.median(np.diff(index.asi8))) / 1e9 if n > 1 else 3600.0  # type: ignore[attr-defined]  # pandas-stubs lacks asi8
    drawdown = drawdown_curve(equity, settings.initial_balance)
    micros = _trade_micros(portfolio, stamps)
    metrics = compute_metrics(
        equity,
        settings.initial_balance,
        portfolio.trades,
        closes_arr,
        bar_seconds,
        portfolio.fees_paid,
        drawdown,
        (micros[:, 1] - micros[:, 0]) / 1e6,
    )
    return BacktestResult(
        trades=portfolio.trades,
        orders=path.orders,
        positions=portfolio.positions,
        decisions=decisions,
        signals=signals,
        times=index,
        equity=equity,
        balance=balance,
        qty=qty,
        drawdown=drawdown,
        metrics=metrics,
        result_hash=result_hash(portfolio.trades, metrics, micros),
        steps=len(stepped),
        elapsed_s=time.perf_counter() - t0,
        open_position=open_position if not settings.close_at_end else None,
    )


def _trade_micros(portfolio: Portfolio, stamps: np.ndarray) -> np.ndarray:
    """Each trade's (entry, exit) bar time in epoch microseconds, one row per trade.

    Every bar's time is `utc_datetime(stamps[i])`, so the times are read off the bar index
    (the position's entry bar, plus the bars held) rather than converted from 2 datetimes
    per trade, which cost more than the rest of the metrics together.
    """
    trades = portfolio.trades
    entry_bar = {p.id: p.entry_bar for p in portfolio.positions}
    entries = np.fromiter(
        (entry_bar[t.position_id] for t in trades), dtype=np.int64, count=len(trades)
    )
    held = np.fromiter((t.bars_held for t in trades), dtype=np.int64, count=len(trades))
    micros = stamps // 1000
    return np.column_stack((micros[entries], micros[entries + held]))


def _ohlcv(bars: pd.DataFrame) -> np.ndarray:
    """The bars' OHLCV as one float array (row per bar), without a copy when the frame
    holds exactly those columns in that order (the loader's frames)."""
    if tuple(bars.columns) == OHLCV:
        return bars.to_numpy(dtype=float)
    return np.column_stack([bars[c].to_numpy(dtype=float) for c in OHLCV])


def _first_touch(pos: Position, highs: np.ndarray, lows: np.ndarray, lo: int, hi: int) -> int:
    """The first bar in [lo, hi) whose range touches the position's stop or take level,
    else hi. Scanned in doubling windows: a position held for 100k bars and stopped out
    after 50 should cost 50 bars of comparisons, not 100k, and the driver asks again
    after every bar it steps."""
    width = 64
    while lo < hi:
        end = min(hi, lo + width)
        hit_sl, hit_tp = touched(
            pos.side, pos.stop_price, pos.take_price, highs[lo:end], lows[lo:end]
        )
        hits = np.flatnonzero(np.asarray(hit_sl) | np.asarray(hit_tp))
        if hits.size:
            return lo + int(hits[0])
        lo, width = end, width * 4
    return hi


def _fill_forward(
    n: int, stepped: list[int], states: list[tuple[float, float, float]], initial: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-bar (cash, signed qty, balance): each stepped bar's state holds until the next."""
    # fromiter over the flattened tuples: np.array on a list of tuples inspects each one
    flat = chain((initial, 0.0, initial), chain.from_iterable(states))
    table = np.fromiter(flat, dtype=float, count=3 * (len(states) + 1)).reshape(-1, 3).T
    marker = np.zeros(n, dtype=np.int64)
    marker[np.asarray(stepped, dtype=np.int64)] = np.arange(1, len(stepped) + 1)
    row = np.maximum.accumulate(marker)
    cash, qty, balance = (column.take(row) for column in table)
    return cash, qty, balance


def _progress(total: int) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="bar", desc="backtest", leave=False, mininterval=0.2)


class Backtest(Node[BacktestConfig]):
    """The `backtest` node (main node of mode=backtest)."""

    def __init__(
        self,
        config: NodeConfig,
        ctx: RunContext,
        data: MarketData,
        strategy: Strategy,
        db: Any = None,
    ) -> None:
        super().__init__(config, ctx)
        self.data = data
        self.strategy = strategy
        self.db = db
        self.settings = BacktestSettings.from_config(self.config)
        use_db = self.config.record.enabled and db is not None
        self.recorder: RunRecorder | None = RunRecorder(db, ctx) if use_db else None
        self.result: BacktestResult | None = None

    def start(self) -> None:
        # The run row exists from the start, so a run that fails later is still on record.
        if self.recorder is not None:
            bars = self.data.bars
            self.recorder.begin(
                strategy=self.strategy.name,
                parameters=self.strategy.parameters(),
                data_fingerprint=self.data.fingerprint,
                data_source=str(self.data.source),
                data_start=bars.index[0].to_pydatetime(),
                data_end=bars.index[-1].to_pydatetime(),
                bars=len(bars),
            )

    def run(self) -> dict[str, Any]:
        try:
            return self._run()
        except BaseException as exc:
            if self.recorder is not None:
                reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc)
                try:
                    self.recorder.fail(f"{type(exc).__name__}: {reason}")
                except Exception as db_exc:  # the original error matters more
                    log_engine_event(
                        "run_record_failed",
                        level="ERROR",
                        run_id=self.ctx.run_id,
                        error=str(db_exc),
                    )
            raise

    def _run(self) -> dict[str, Any]:
        cfg, ctx = self.config, self.ctx
        bars = self.data.bars
        log_engine_event(
            "backtest_start",
            run_id=ctx.run_id,
            strategy=self.strategy.name,
            symbol=self.data.symbol,
            timeframe=self.data.timeframe,
            bars=len(bars),
            first=bars.index[0].isoformat(),
            last=bars.index[-1].isoformat(),
        )
        delta = timeframe_delta(self.data.timeframe)
        show = (
            sys.stdout.isatty() and len(bars) >= 10_000
            if cfg.progress == "auto"
            else bool(cfg.progress)
        )
        result = run_backtest(
            bars,
            self.strategy,
            self.settings,
            bar_seconds=delta.total_seconds() if delta is not None else None,
            progress=show,
            should_stop=lambda: ctx.stopping,
        )
        self.result = result
        t_record = time.perf_counter()
        if self.recorder is not None:
            self._record(result)
        record_s = time.perf_counter() - t_record
        if cfg.export_csv is not None:
            export_trades_csv(result.trades, cfg.export_csv)
        m = result.metrics
        log_engine_event(
            "backtest_end",
            run_id=ctx.run_id,
            strategy=self.strategy.name,
            trades=m["num_trades"],
            total_return=m["total_return"],
            max_drawdown=m["max_drawdown"],
            result_hash=result.result_hash,
            elapsed_s=round(result.elapsed_s, 4),
            record_s=round(record_s, 4),
            bars_per_s=round(len(bars) / result.elapsed_s) if result.elapsed_s > 0 else None,
        )
        if cfg.summary:
            # stdout stays a stream of JSON records when the logs are JSON on stdout
            print(self.summary(result), file=report_stream(), flush=True)
        return {"run_id": ctx.run_id, "result_hash": result.result_hash, "metrics": m}

    def _record(self, result: BacktestResult) -> None:
        assert self.recorder is not None
        rec = self.config.record
        last_close = float(self.data.bars["close"].iloc[-1])
        self.recorder.write(
            trades=result.trades,
            orders=result.orders,
            positions=result.positions,
            open_position_mark=last_close,
            decisions=result.decisions if rec.decisions else None,
            account={
                "times": result.times,
                "balance": result.balance,
                "equity": result.equity,
                "drawdown": result.drawdown,
                "qty": result.qty,
                "close": self.data.bars["close"].to_numpy(dtype=float),  # marks exposure
            }
            if rec.account_history
            else None,
            predictions=result.signals.predictions if rec.predictions else None,
        )
        self.recorder.finish(result.metrics, result.result_hash)

    def summary(self, result: BacktestResult) -> str:
        bars = self.data.bars
        header = {
            "Run": self.ctx.run_id,
            "Strategy": self.strategy.name,
            "Market": f"{self.data.symbol} {self.data.timeframe}",
            "Period": f"{bars.index[0]:%Y-%m-%d %H:%M} -> {bars.index[-1]:%Y-%m-%d %H:%M} UTC",
            "Result hash": result.result_hash[:16],
        }
        if self.config.export_csv is not None:
            header["Trades CSV"] = str(self.config.export_csv)
        footer = self.strategy.summary_rows()
        return summary_table(result.metrics, header, footer) + no_trade_note(result)


def no_trade_note(result: BacktestResult) -> str:
    """Say why a run with signals made no trades, instead of leaving a row of zeros."""
    if result.trades or not result.decisions:
        return ""
    reasons = result.decisions.zero_size_reasons()
    if not reasons:
        return ""
    reason, count = reasons.most_common(1)[0]
    return (
        f"\nNo trades: {len(result.decisions):,} signals, {sum(reasons.values()):,} sized to zero;"
        f" most often ({count:,}x): {reason}.\nEvery decision and its reason is recorded with"
        " this run (run_series 'decisions': atb.db.series.read_series)."
    )
