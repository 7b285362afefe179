"""Persist a run: the `runs` row (written at start, closed at the end) and its children.

Children are written column-wise in bulk, one executemany per table, and a backtest's
per-bar series as compressed columns (atb/db/series.py), so recording a 1M-bar run costs
about what the run itself did, not one round trip (or row) per bar. The paper/live engine
(LiveRecorder) appends rows as things happen.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from itertools import chain
from operator import attrgetter
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sqlalchemy import insert, update

from atb.db.bulk import prepare_columns
from atb.db.models.base import table_of
from atb.db.models.run_records import (
    OrderRecord,
    PositionRecord,
    Run,
    TradeRecord,
)
from atb.db.series import ACCOUNT, DECISIONS, PREDICTIONS, insert_series_rows, series_rows
from atb.engine.decision import DecisionRecord
from atb.engine.decision_log import DecisionLog
from atb.engine.orders import Order
from atb.engine.portfolio import Position, Trade
from atb.runtime.context import RunContext


class SessionSource(Protocol):
    """What the recorder needs from the `db` node."""

    engine: Any

    def session(self) -> Any: ...


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """`atb.__version__` plus the git commit when running from a checkout (no subprocess)."""
    from atb import __version__

    commit = _git_commit(Path(__file__).resolve().parents[2])
    return f"{__version__}+g{commit[:12]}" if commit else __version__


def _git_commit(root: Path) -> str | None:
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head or None
        ref = head[5:]
        ref_file = git / ref
        if ref_file.is_file():
            return ref_file.read_text().strip()
        packed = git / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(" " + ref):
                    return line.split(" ", 1)[0]
    except OSError:
        return None
    return None


def clean_json(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become None, numpy scalars become Python numbers."""
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | pd.Timestamp):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    return value


_HASHED_NUMBERS = attrgetter("side", "qty", "entry_price", "exit_price", "fees", "pnl")
_HASHED_TIMES = attrgetter("entry_time", "exit_time")


def result_hash(
    trades: Sequence[Trade], metrics: dict[str, Any], micros: np.ndarray | None = None
) -> str:
    """sha256 of the trades and metrics: identical runs give identical hashes.

    Trade numbers are hashed as their exact float64 bytes (cheaper than text and just as
    exact); metrics by repr, sorted by name. `micros`: the trades' (entry, exit) times in
    epoch microseconds, one row per trade, when the caller has them (the backtest reads them
    off its bar index); otherwise each datetime is converted.
    """
    digest = hashlib.sha256()
    # fromiter over flattened fields: np.array on a list of tuples inspects every tuple
    numbers = np.fromiter(
        chain.from_iterable(map(_HASHED_NUMBERS, trades)), dtype="<f8", count=6 * len(trades)
    )
    if micros is not None:
        # datetime.timestamp() is the microseconds divided by 10**6, correctly rounded:
        # the same float64 as this division (both operands are exact below 2**53).
        times = (micros.astype("<f8") / 1e6).ravel()
    else:
        times = np.fromiter(
            (d.timestamp() for d in chain.from_iterable(map(_HASHED_TIMES, trades))),
            dtype="<f8",
            count=2 * len(trades),
        )
    digest.update(numbers.tobytes())
    digest.update(times.tobytes())
    digest.update("|".join(t.exit_reason for t in trades).encode())
    digest.update(json.dumps({k: repr(v) for k, v in sorted(metrics.items())}).encode())
    return digest.hexdigest()


def prediction_columns(predictions: pd.DataFrame, default_time: Any = None) -> dict[str, Any]:
    """The predictions series' columns from a strategy's predictions frame.

    Numbers stay float arrays (direction too: NaN where the model gave none), so the
    compact store keeps them as exact doubles; a missing column is None on every bar.
    Times: a `time` column, else a `time` index, else `default_time` on every row.
    """
    frame = predictions
    if "time" not in frame.columns and frame.index.name == "time":
        frame = frame.reset_index()
    n = len(frame)

    def floats(name: str) -> Any:
        if name not in frame.columns:
            return [None] * n
        return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float)

    model_id: Any = [None] * n
    if "model_id" in frame.columns:
        model_id = [None if v in (None, "") else str(v) for v in frame["model_id"].tolist()]
    times = frame["time"] if "time" in frame.columns else [default_time] * n
    return {
        "time": pd.DatetimeIndex(times),
        "predicted_price": floats("predicted_price"),
        "r": floats("r"),
        "confidence": floats("confidence"),
        "direction": floats("direction"),
        "model_id": model_id,
    }


def prediction_row(predictions: pd.DataFrame | None, default_time: Any) -> dict[str, Any] | None:
    """The latest prediction as one `predictions` row (the live path's per-bar write):
    the last row of `prediction_columns`, NaN as None, direction as an int."""
    if predictions is None or not len(predictions):
        return None
    columns = prediction_columns(predictions.iloc[-1:], default_time)
    row = {name: values[0] for name, values in columns.items()}
    for name in ("predicted_price", "r", "confidence", "direction"):
        value = row[name]
        row[name] = None if value is None or value != value else float(value)
    when = row["time"]
    row["time"] = (when if when.tzinfo else when.tz_localize("UTC")).to_pydatetime()
    if row["direction"] is not None:
        row["direction"] = int(row["direction"])
    return row


def account_columns(account: dict[str, Any]) -> dict[str, Any]:
    """The account series' columns (what `account_history` rows hold) from whole arrays."""
    qty = np.asarray(account["qty"], dtype=float)
    equity = np.asarray(account["equity"], dtype=float)
    close = account.get("close")
    exposure = (
        exposure_ratio(qty, np.asarray(close, dtype=float), equity)
        if close is not None
        else np.full(len(qty), np.nan)
    )
    return {
        "time": pd.DatetimeIndex(account["times"]),
        "balance": np.asarray(account["balance"], dtype=float),
        "equity": equity,
        "drawdown": np.asarray(account["drawdown"], dtype=float),
        "position_qty": qty,
        "open_positions": (qty != 0).astype(float),  # one net position per symbol
        "exposure": exposure,
    }


def exposure_ratio(qty: Any, price: Any, equity: Any) -> Any:
    """Gross position notional / equity (|qty| × price / equity): 0 flat, 1.0 fully
    invested, > 1 leveraged. Where equity <= 0 the ratio means nothing: NaN in an array
    (a whole backtest; NULL once inserted), None for scalars (one live bar)."""
    q, p, e = np.asarray(qty, float), np.asarray(price, float), np.asarray(equity, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(e > 0, np.abs(q) * p / e, np.nan)
    if ratio.ndim:
        return ratio
    value = float(ratio)
    return None if value != value else value


def _side(side: int) -> str:
    return "long" if side > 0 else "short"


def _rows(columns: dict[str, Any]) -> list[dict[str, Any]]:
    """Column-wise values (lists, or a scalar for every row) as one dict per row."""
    n = max((len(v) for v in columns.values() if isinstance(v, list)), default=0)
    lists = [v if isinstance(v, list) else [v] * n for v in columns.values()]
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*lists, strict=True)]


class RunRecorder:
    """Writes one run's records through `db.session()`; every write is one transaction."""

    def __init__(self, db: SessionSource, ctx: RunContext) -> None:
        self.db = db
        self.ctx = ctx
        self.run_id = ctx.run_id
        self.mode = ctx.mode
        self.symbol = ctx.symbol

    def begin(
        self,
        *,
        strategy: str | None,
        parameters: dict[str, Any] | None,
        data_fingerprint: str | None,
        data_source: str | None,
        data_start: datetime | None,
        data_end: datetime | None,
        bars: int | None,
    ) -> None:
        ctx = self.ctx
        row = {
            "id": self.run_id,
            "mode": ctx.mode,
            "strategy": strategy,
            "symbol": ctx.symbol,
            "timeframe": ctx.timeframe,
            "status": "running",
            "started_at": datetime.now(UTC),
            "config": clean_json(ctx.config),
            "overrides": list(ctx.overrides),
            "parameters": clean_json(parameters),
            "data_fingerprint": data_fingerprint,
            "data_source": data_source,
            "data_start": data_start,
            "data_end": data_end,
            "bars": bars,
            "code_version": code_version(),
            "sweep_id": ctx.sweep_id,
            "job_num": ctx.job_num,
        }
        with self.db.session() as session:
            session.execute(insert(Run), [row])

    def finish(self, metrics: dict[str, Any], result_hash: str) -> None:
        self._close("finished", metrics=clean_json(metrics), result_hash=result_hash)

    def fail(self, error: str) -> None:
        self._close("failed", error=error[:4000])

    def _close(self, status: str, **values: Any) -> None:
        with self.db.session() as session:
            session.execute(
                update(Run)
                .where(Run.id == self.run_id)
                .values(status=status, finished_at=datetime.now(UTC), **values)
            )

    # -- children ---------------------------------------------------------------------
    def _common(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "mode": self.mode}

    def write(
        self,
        *,
        trades: Sequence[Trade] = (),
        orders: Sequence[Order] = (),
        positions: Sequence[Position] = (),
        open_position_mark: float | None = None,
        decisions: DecisionLog | None = None,
        account: dict[str, Any] | None = None,
        predictions: pd.DataFrame | None = None,
    ) -> None:
        """Bulk-write a batch of child rows in one transaction."""
        series: list[tuple[str, dict[str, Any]]] = []
        if decisions:
            # One per non-HOLD signal: on a 1M-bar ml_basic run that is ~300k, so they are
            # columns like the per-bar series (the `decisions` table is the live path's).
            series.append((DECISIONS, decisions.columns()))
        if account is not None:
            series.append((ACCOUNT, account_columns(account)))
        if predictions is not None and len(predictions):
            series.append((PREDICTIONS, prediction_columns(predictions)))
        # Everything is built and compressed before the write transaction opens: a SQLite
        # writer holds the file's lock only while rows go in, so the jobs of a parallel
        # sweep overlap their recording instead of queueing behind each other's zlib.
        dialect = self.db.engine.dialect
        tables: list[tuple[Any, dict[str, Any]]] = []
        if trades:
            tables.append((TradeRecord, self.trade_columns(trades)))
        if orders:
            tables.append((OrderRecord, self.order_columns(orders)))
        if positions:
            tables.append(
                (PositionRecord, self.position_columns(positions, trades, open_position_mark))
            )
        prepared = [prepare_columns(dialect, table_of(model), cols) for model, cols in tables]
        rows = [r for name, cols in series for r in series_rows(self.run_id, self.mode, name, cols)]
        with self.db.session() as session:
            conn = session.connection()
            for insert in prepared:
                if insert is not None:
                    insert(conn)
            insert_series_rows(session, rows)

    # Column-wise builders for whole backtests (tens of thousands of rows): one list per
    # column instead of a dict per row.
    def _entry_columns(self, legs: Sequence[Trade] | Sequence[Position]) -> dict[str, Any]:
        # A trade and its position carry the same entry leg: one definition of those
        # columns keeps the trade and position tables in step.
        return {
            "symbol": self.symbol,
            "side": [_side(leg.side) for leg in legs],
            "qty": [leg.qty for leg in legs],
            "entry_time": [leg.entry_time for leg in legs],
            "entry_price": [leg.entry_price for leg in legs],
        }

    def trade_columns(self, trades: Sequence[Trade]) -> dict[str, Any]:
        return {
            **self._common(),
            "trade_no": [t.id for t in trades],
            "position_no": [t.position_id for t in trades],
            **self._entry_columns(trades),
            "exit_time": [t.exit_time for t in trades],
            "exit_price": [t.exit_price for t in trades],
            "fees": [t.fees for t in trades],
            "pnl": [t.pnl for t in trades],
            "return_pct": [t.return_pct for t in trades],
            "exit_reason": [t.exit_reason for t in trades],
            "bars_held": [t.bars_held for t in trades],
        }

    def order_columns(self, orders: Sequence[Order]) -> dict[str, Any]:
        filled = [o.status == "filled" for o in orders]
        return {
            **self._common(),
            "order_no": [o.id for o in orders],
            "symbol": self.symbol,
            "created_at": [o.created for o in orders],
            "side": [o.side_name for o in orders],
            "kind": [o.kind for o in orders],
            "order_type": "market",
            "reason": [o.reason for o in orders],
            "status": [o.status for o in orders],
            "size": [o.size if o.kind == "entry" else None for o in orders],
            "filled_at": [o.filled_at for o in orders],
            "qty": [o.qty if f else None for o, f in zip(orders, filled, strict=True)],
            "price": [o.price if f else None for o, f in zip(orders, filled, strict=True)],
            "fee": [o.fee if f else None for o, f in zip(orders, filled, strict=True)],
            "position_no": [o.position_id for o in orders],
            "exchange_order_id": [o.exchange_order_id for o in orders],
            "note": [o.note for o in orders],
            "error_code": [o.error_code for o in orders],  # exchange rejections only
        }

    def position_columns(
        self, positions: Sequence[Position], trades: Sequence[Trade], mark: float | None
    ) -> dict[str, Any]:
        closed = {t.position_id: t for t in trades}
        exits = [closed.get(p.id) for p in positions]
        unrealized = [
            p.side * (mark - p.entry_price) * p.qty - p.entry_fee
            if t is None and mark is not None
            else None
            for p, t in zip(positions, exits, strict=True)
        ]
        return {
            **self._common(),
            "position_no": [p.id for p in positions],
            **self._entry_columns(positions),
            "stop_loss": [p.stop_price for p in positions],
            "take_profit": [p.take_price for p in positions],
            "status": ["closed" if t else "open" for t in exits],
            "closed_at": [t.exit_time if t else None for t in exits],
            "exit_price": [t.exit_price if t else None for t in exits],
            "realized_pnl": [t.pnl if t else None for t in exits],
            "last_price": [None if t else mark for t in exits],
            "unrealized_pnl": unrealized,
        }

    # The live path appends a bar's rows as dicts: the same builders, transposed.
    def trade_rows(self, trades: Sequence[Trade]) -> list[dict[str, Any]]:
        return _rows(self.trade_columns(trades))

    def order_rows(self, orders: Sequence[Order]) -> list[dict[str, Any]]:
        return _rows(self.order_columns(orders))

    def position_rows(
        self, positions: Sequence[Position], trades: Sequence[Trade], mark: float | None
    ) -> list[dict[str, Any]]:
        return _rows(self.position_columns(positions, trades, mark))

    def decision_rows(self, decisions: Iterable[DecisionRecord]) -> list[dict[str, Any]]:
        common = self._common()
        return [
            {
                **common,
                "time": d.time,
                "signal": d.direction,
                "confidence": d.confidence,
                "action": d.action,
                "size": d.size,
                "reason": d.reason,
                "price": d.price,
            }
            for d in decisions
        ]
