"""The record log's ops and how they reach the database, exactly once.

A paper/live session's records travel as *ops* (see atb/engine/record_log.py): one JSON
line of `records-<run_id>.jsonl` per bar, order announcement or close, each with a
sequence number. `apply_ops` writes a batch of one run's ops in the caller's transaction
and stores the last sequence number in `runs.metrics["records_seq"]`, so an op applied
twice (a retry after a timeout that did commit, a file replayed after a crash, `atb db
records` run again) is stored once. Orders and positions are upserts on (run_id,
order_no / position_no); trades, decisions, account and prediction rows are inserts
guarded by the sequence number.

`apply_file` applies a record log a session left behind (killed, or stopped while the
database was down) and deletes it; `replay_orphans` does that for every unlocked log in
a directory (a session's start), `atb db records` for the logs an operator names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from loguru import logger
from sqlalchemy import Connection, DateTime, Table, bindparam, insert, select, update

from atb.db.errors import RecordLogBusy, RecordLogError
from atb.db.models.base import table_of
from atb.db.models.run_records import (
    AccountSnapshot,
    DecisionRecordRow,
    OrderRecord,
    PositionRecord,
    PredictionRecord,
    Run,
    TradeRecord,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

Op = dict[str, Any]
SEQ_KEY = "records_seq"


RUNS = table_of(Run)
ORDERS = table_of(OrderRecord)
POSITIONS = table_of(PositionRecord)
# op key -> table of plain inserts
INSERTS = {
    "trades": table_of(TradeRecord),
    "decisions": table_of(DecisionRecordRow),
    "account": table_of(AccountSnapshot),
    "predictions": table_of(PredictionRecord),
}
ORDER_UPDATE = (
    "status", "filled_at", "qty", "price", "fee", "position_no", "exchange_order_id",
    "note", "error_code",
)  # fmt: skip
POSITION_UPDATE = (
    "qty", "stop_loss", "take_profit", "status", "closed_at", "exit_price", "realized_pnl",
    "last_price", "unrealized_pnl",
)  # fmt: skip
_DATETIME_COLUMNS = {
    table.name: {c.name for c in table.columns if isinstance(c.type, DateTime)}
    for table in (RUNS, ORDERS, POSITIONS, *INSERTS.values())
}


def _default(value: Any) -> Any:
    if isinstance(value, datetime):  # pandas.Timestamp and other subclasses
        return value.isoformat()
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def encode_op(op: Op) -> bytes:
    return orjson.dumps(op, default=_default, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"


def _revive(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    """JSON text back to the column types the DBAPI needs (datetimes)."""
    for name in _DATETIME_COLUMNS[table.name]:
        value = row.get(name)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            row[name] = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return row


def apply_ops(conn: Connection, ops: list[Op]) -> int:
    """Apply one run's ops inside the caller's transaction; returns how many were new.

    The batch is coalesced: an order or position written by several ops is upserted once
    with its last row, the inserts of all ops go out as one executemany per table, and the
    run row is updated once. The result is what applying the ops one by one would give.
    """
    if not ops:
        return 0
    run_id = ops[0]["run_id"]
    found = conn.execute(select(RUNS.c.metrics).where(RUNS.c.id == run_id)).first()
    if found is None:
        return 0  # the run row is gone (deleted by the user): nothing to attach rows to
    done = int((found[0] or {}).get(SEQ_KEY) or 0)
    applied = 0
    orders: dict[Any, dict[str, Any]] = {}
    positions: dict[Any, dict[str, Any]] = {}
    inserts: dict[str, list[dict[str, Any]]] = {key: [] for key in INSERTS}
    run_values: dict[str, Any] = {}
    for op in ops:
        seq = int(op["seq"])
        if seq <= done:
            continue
        done = seq
        applied += 1
        for row in op.get("orders") or ():
            orders[row["order_no"]] = row
        for row in op.get("positions") or ():
            positions[row["position_no"]] = row
        for key in INSERTS:
            inserts[key].extend(op.get(key) or ())
        if op.get("metrics") is not None:
            run_values["metrics"] = op["metrics"]
        if op.get("close") is not None:
            run_values.update(_revive(RUNS, dict(op["close"])))
    if not applied:
        return 0
    _upsert_many(conn, ORDERS, "order_no", ORDER_UPDATE, run_id, list(orders.values()))
    _upsert_many(conn, POSITIONS, "position_no", POSITION_UPDATE, run_id, list(positions.values()))
    for key, rows in inserts.items():
        if rows:
            table = INSERTS[key]
            conn.execute(insert(table), [_revive(table, dict(r)) for r in rows])
    run_values["metrics"] = {**(run_values.get("metrics") or found[0] or {}), SEQ_KEY: done}
    conn.execute(update(RUNS).where(RUNS.c.id == run_id).values(**run_values))
    return applied


def _upsert_many(
    conn: Connection,
    table: Table,
    key: str,
    columns: tuple[str, ...],
    run_id: str,
    rows: list[dict[str, Any]],
) -> None:
    """Insert the rows not stored yet, update the others: one SELECT + two executemany."""
    if not rows:
        return
    existing = set(
        conn.execute(
            select(table.c[key]).where(
                table.c.run_id == run_id, table.c[key].in_([r[key] for r in rows])
            )
        ).scalars()
    )
    fresh = [_revive(table, dict(r)) for r in rows if r[key] not in existing]
    if fresh:
        conn.execute(insert(table), fresh)
    stale = [_revive(table, dict(r)) for r in rows if r[key] in existing]
    if stale:
        stmt = (
            update(table)
            .where(table.c.run_id == bindparam("k_run"), table.c[key] == bindparam("k_key"))
            .values({c: bindparam(f"v_{c}") for c in columns})
        )
        conn.execute(
            stmt,
            [{"k_run": run_id, "k_key": r[key], **{f"v_{c}": r.get(c) for c in columns}}
             for r in stale],
        )  # fmt: skip


def log_path(directory: Path, run_id: str) -> Path:
    return directory / f"records-{run_id}.jsonl"


@dataclass
class Applied:
    """What `apply_file` did with one record log."""

    path: Path
    ops: int = 0
    """Complete ops in the file (a line torn by a kill mid-write never returned to the
    loop, so it is not an op)."""
    applied: int = 0
    """Ops new to the database; the others were already there (records_seq)."""
    runs: list[str] = field(default_factory=list)


def _read_ops(fh: Any, path: Path, strict: bool) -> list[Op]:
    ops: list[Op] = []
    for number, line in enumerate(fh, 1):
        if not line.endswith(b"\n"):
            continue  # torn by a kill mid-write: the loop never saw it written
        try:
            op = orjson.loads(line)
        except orjson.JSONDecodeError:
            op = None
        valid = (
            isinstance(op, dict)
            and isinstance(op.get("seq"), int)
            and isinstance(op.get("run_id"), str)
        )
        if valid:
            ops.append(op)
        elif strict:
            raise RecordLogError(
                f"{path}: line {number} is not a record-log op (JSON with seq and run_id)"
            )
    return ops


def apply_file(engine: Any, path: Path, *, strict: bool = False) -> Applied:
    """Apply one record log left behind by a session, then delete it; idempotent.

    `strict` (an operator's command): a line that is not an op, or a run that is not in
    this database, is an error and the file is left as it was; otherwise (a session
    start) such lines are skipped and ops of unknown runs dropped with the file.
    Raises RecordLogBusy if a running session holds the file's lock.
    """
    try:
        fh = path.open("rb")
    except FileNotFoundError:
        raise RecordLogError(f"{path}: no such file") from None
    except OSError as exc:
        raise RecordLogError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with fh:
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RecordLogBusy(
                    f"{path}: in use by a running session, which writes these records"
                ) from None
        ops = _read_ops(fh, path, strict)
        by_run: dict[str, list[Op]] = {}
        for op in ops:
            by_run.setdefault(op["run_id"], []).append(op)
        result = Applied(path, ops=len(ops), runs=list(by_run))
        with engine.begin() as conn:
            known = set(
                conn.execute(select(RUNS.c.id).where(RUNS.c.id.in_(list(by_run)))).scalars()
            )
            unknown = [run for run in by_run if run not in known]
            if unknown and strict:
                raise RecordLogError(
                    f"{path}: run {', '.join(unknown)} is not in this database (another "
                    "database's log? check --db-url); nothing applied, the file is kept"
                )
            for run_id in known:
                result.applied += apply_ops(conn, by_run[run_id])
        path.unlink(missing_ok=True)
    return result


def replay_orphans(engine: Any, directory: Path, *, own: Path | None = None) -> int:
    """Apply every unlocked record log in `directory` (a dead session's), then delete it.

    Raises the database's error if it cannot be written: resuming from a state older than
    what the dead session did could repeat its orders.
    """
    if not directory.is_dir():
        return 0
    total = 0
    for path in sorted(directory.glob("records-*.jsonl")):
        if own is not None and path == own:
            continue
        try:
            result = apply_file(engine, path)
        except RecordLogError:
            continue  # a live session owns it, or another start replayed it meanwhile
        total += result.applied
        if result.applied:
            logger.info("records: replayed {} op(s) left in {}", result.applied, path)
    return total
