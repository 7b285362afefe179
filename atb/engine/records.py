"""Persist a run: the `runs` row (written at start, closed at the end) and its children.

Children are written column-wise in bulk, one executemany per table, and a backtest's
per-bar series as compressed columns (atb/db/series.py), so recording a 1M-bar run costs
about what the run itself did, not one round trip (or row) per bar. The paper/live engine
(LiveRecorder) appends rows as things happen.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
from sqlalchemy import JSON, DateTime, insert, update
from sqlalchemy.orm import Session

from atb.db.models.run_records import (
    OrderRecord,
    PositionRecord,
    Run,
    TradeRecord,
)
from atb.db.series import ACCOUNT, DECISIONS, PREDICTIONS, insert_series_rows, series_rows
from atb.engine.decision import DecisionRecord
from atb.engine.orders import Order
from atb.engine.portfolio import Position, Trade
from atb.runtime.context import RunContext


class SessionSource(Protocol):
    """What the recorder needs from the `db` node."""

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


def result_hash(trades: Sequence[Trade], metrics: dict[str, Any]) -> str:
    """sha256 of the trades and metrics: identical runs give identical hashes.

    Trade numbers are hashed as their exact float64 bytes (cheaper than text and just as
    exact); metrics by repr, sorted by name.
    """
    digest = hashlib.sha256()
    numbers = np.array(
        [(t.side, t.qty, t.entry_price, t.exit_price, t.fees, t.pnl) for t in trades],
        dtype="<f8",
    ).reshape(-1, 6)
    times = np.array(
        [(t.entry_time.timestamp(), t.exit_time.timestamp()) for t in trades], dtype="<f8"
    ).reshape(-1, 2)
    digest.update(numbers.tobytes())
    digest.update(times.tobytes())
    digest.update("|".join(t.exit_reason for t in trades).encode())
    digest.update(json.dumps({k: repr(v) for k, v in sorted(metrics.items())}).encode())
    return digest.hexdigest()


def _sqlite_stamps(times: list[Any]) -> list[str | None]:
    """UTC datetimes (or None) as the text SQLAlchemy's SQLite DateTime stores."""
    present = [t for t in times if t is not None]
    if not present:
        return [None] * len(times)
    texts = iter(_sqlite_times(pd.DatetimeIndex(present)))
    return [None if t is None else next(texts) for t in times]


def insert_columns(session: Session, table: Any, columns: dict[str, Any]) -> None:
    """Insert rows given column-wise: arrays/lists, a DatetimeIndex for times, or a scalar
    repeated on every row. Times are formatted in one vectorised call on SQLite."""
    n = max((len(v) for v in columns.values() if not _scalar(v)), default=0)
    if n == 0:
        return
    sqlite = session.get_bind().dialect.name == "sqlite"
    lists: list[Any] = []
    for name, value in columns.items():
        if _scalar(value):
            lists.append(itertools.repeat(value, n))
        elif sqlite and isinstance(value, list) and isinstance(table.c[name].type, DateTime):
            lists.append(_sqlite_stamps(value))  # datetimes or None
        elif isinstance(value, pd.DatetimeIndex):
            utc = value.tz_convert("UTC") if value.tz is not None else value
            if sqlite:
                lists.append(_sqlite_times(utc))
            else:
                lists.append(list(utc.to_pydatetime()))
        else:
            lists.append(_py_values(value))
    names = list(columns)
    if sqlite and not any(isinstance(table.c[c].type, JSON) for c in names):
        prep = session.get_bind().dialect.identifier_preparer
        sql = (
            f"INSERT INTO {prep.format_table(table)} ({', '.join(prep.quote(c) for c in names)})"
            f" VALUES ({', '.join('?' * len(names))})"
        )
        session.connection().exec_driver_sql(sql, list(zip(*lists, strict=False)))
    else:
        session.execute(
            insert(table), [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=False)]
        )


def _sqlite_times(index: pd.DatetimeIndex) -> list[str]:
    """`YYYY-MM-DD HH:MM:SS.ffffff` for every time, vectorised (what SQLAlchemy stores)."""
    naive = index.tz_localize(None) if index.tz is not None else index
    text = np.datetime_as_string(naive.values.astype("M8[us]"), unit="us").astype("U26")
    chars = text.view(np.uint32).reshape(len(text), 26)
    chars[:, 10] = ord(" ")  # the ISO 'T' separator -> space, without a per-string loop
    return text.tolist()


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float)


def _py_values(value: Any) -> list[Any]:
    """Python values for the driver: NaN -> None, numpy scalars -> Python."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        out = value.astype(object)
        out[np.isnan(value)] = None
        return out.tolist()
    if isinstance(value, np.ndarray | pd.Series | pd.Index):
        return list(np.asarray(value).tolist())
    return list(value)


def decision_columns(decisions: Sequence[DecisionRecord]) -> dict[str, Any]:
    """The decisions series' columns (what `decisions` rows hold), numbers as float arrays
    (NaN where a confidence is missing), actions and reasons as text."""
    _bar, times, direction, confidence, action, size, reason, price = zip(*decisions, strict=True)
    return {
        "time": pd.DatetimeIndex(times),
        "signal": np.asarray(direction, dtype=float),
        "confidence": np.array([np.nan if c is None else c for c in confidence], dtype=float),
        "action": list(action),
        "size": np.asarray(size, dtype=float),
        "reason": list(reason),
        "price": np.asarray(price, dtype=float),
    }


def prediction_columns(predictions: pd.DataFrame) -> dict[str, Any]:
    """The predictions series' columns from a strategy's predictions frame.

    Numbers stay float arrays (direction too: NaN where the model gave none), so the
    compact store keeps them as exact doubles; a missing column is None on every bar.
    """
    frame = predictions.reset_index() if "time" not in predictions.columns else predictions
    n = len(frame)

    def floats(name: str) -> Any:
        return frame[name].to_numpy(dtype=float) if name in frame.columns else [None] * n

    model_id: Any = [None] * n
    if "model_id" in frame.columns:
        model_id = [None if v is None else str(v) for v in frame["model_id"].tolist()]
    return {
        "time": pd.DatetimeIndex(frame["time"]),
        "predicted_price": floats("predicted_price"),
        "r": floats("r"),
        "confidence": floats("confidence"),
        "direction": floats("direction"),
        "model_id": model_id,
    }


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
        decisions: Sequence[DecisionRecord] = (),
        account: dict[str, Any] | None = None,
        predictions: pd.DataFrame | None = None,
    ) -> None:
        """Bulk-write a batch of child rows in one transaction."""
        series: list[tuple[str, dict[str, Any]]] = []
        if decisions:
            # One per non-HOLD signal: on a 1M-bar ml_basic run that is ~300k, so they are
            # columns like the per-bar series (the `decisions` table is the live path's).
            series.append((DECISIONS, decision_columns(decisions)))
        if account is not None:
            series.append((ACCOUNT, account_columns(account)))
        if predictions is not None and len(predictions):
            series.append((PREDICTIONS, prediction_columns(predictions)))
        # The per-bar series compress (zlib, GIL released) while the row tables insert
        # (sqlite3/psycopg release the GIL too): on a 1M-bar run the two overlap.
        with ThreadPoolExecutor(max_workers=1) as pool:
            encoded = pool.submit(
                lambda: [
                    r
                    for name, cols in series
                    for r in series_rows(self.run_id, self.mode, name, cols)
                ]
            )
            with self.db.session() as session:
                if trades:
                    insert_columns(session, TradeRecord.__table__, self.trade_columns(trades))
                if orders:
                    insert_columns(session, OrderRecord.__table__, self.order_columns(orders))
                if positions:
                    insert_columns(
                        session,
                        PositionRecord.__table__,
                        self.position_columns(positions, trades, open_position_mark),
                    )
                insert_series_rows(session, encoded.result())

    # Column-wise builders for whole backtests (tens of thousands of rows): one list per
    # column instead of a dict per row. The *_rows methods below stay for the live path.
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
            "exchange_order_id": None,
            "note": [o.note for o in orders],
            "error_code": None,  # only exchange rejections have one (LiveRecorder)
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

    def trade_rows(self, trades: Iterable[Trade]) -> list[dict[str, Any]]:
        common = self._common()
        return [
            {
                **common,
                "trade_no": t.id,
                "position_no": t.position_id,
                "symbol": self.symbol,
                "side": _side(t.side),
                "qty": t.qty,
                "entry_time": t.entry_time,
                "entry_price": t.entry_price,
                "exit_time": t.exit_time,
                "exit_price": t.exit_price,
                "fees": t.fees,
                "pnl": t.pnl,
                "return_pct": t.return_pct,
                "exit_reason": t.exit_reason,
                "bars_held": t.bars_held,
            }
            for t in trades
        ]

    def order_rows(self, orders: Iterable[Order]) -> list[dict[str, Any]]:
        common = self._common()
        return [
            {
                **common,
                "order_no": o.id,
                "symbol": self.symbol,
                "created_at": o.created,
                "side": o.side_name,
                "kind": o.kind,
                "order_type": "market",
                "reason": o.reason,
                "status": o.status,
                "size": o.size if o.kind == "entry" else None,
                "filled_at": o.filled_at,
                "qty": o.qty if o.status == "filled" else None,
                "price": o.price if o.status == "filled" else None,
                "fee": o.fee if o.status == "filled" else None,
                "position_no": o.position_id,
                "exchange_order_id": None,
                "note": o.note,
                "error_code": None,  # only exchange rejections have one (LiveRecorder)
            }
            for o in orders
        ]

    def position_rows(
        self, positions: Iterable[Position], trades: Sequence[Trade], mark: float | None
    ) -> list[dict[str, Any]]:
        common = self._common()
        closed = {t.position_id: t for t in trades}
        rows = []
        for p in positions:
            trade = closed.get(p.id)
            unrealized = None
            if trade is None and mark is not None:
                unrealized = p.side * (mark - p.entry_price) * p.qty - p.entry_fee
            rows.append(
                {
                    **common,
                    "position_no": p.id,
                    "symbol": self.symbol,
                    "side": _side(p.side),
                    "qty": p.qty,
                    "entry_time": p.entry_time,
                    "entry_price": p.entry_price,
                    "stop_loss": p.stop_price,
                    "take_profit": p.take_price,
                    "status": "closed" if trade else "open",
                    "closed_at": trade.exit_time if trade else None,
                    "exit_price": trade.exit_price if trade else None,
                    "realized_pnl": trade.pnl if trade else None,
                    "last_price": None if trade else mark,
                    "unrealized_pnl": unrealized,
                }
            )
        return rows

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

    def prediction_rows(self, predictions: pd.DataFrame) -> list[dict[str, Any]]:
        frame = predictions.reset_index() if "time" not in predictions.columns else predictions
        n = len(frame)

        def col(name: str) -> list[Any]:
            if name not in frame.columns:
                return [None] * n
            values = frame[name]
            if name == "time":
                return list(pd.DatetimeIndex(values).to_pydatetime())
            return [clean_json(v) for v in values.tolist()]

        times = col("time")
        price, r, conf = col("predicted_price"), col("r"), col("confidence")
        direction, model_id = col("direction"), col("model_id")
        run_id, mode = self.run_id, self.mode
        return [
            {
                "run_id": run_id,
                "mode": mode,
                "time": times[i],
                "predicted_price": price[i],
                "r": r[i],
                "confidence": conf[i],
                "direction": None if direction[i] is None else int(direction[i]),
                "model_id": None if model_id[i] is None else str(model_id[i]),
            }
            for i in range(n)
        ]
