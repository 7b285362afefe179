"""The event journal: every event, WARNING+ record and alert becomes a `system_events` row.

Callers never wait on the database. The path of one event:

1. The caller (a log-record listener, or `Journal.emit` for alerts/heartbeats) appends the
   record to an in-memory deque: a few hundred nanoseconds, no lock, no I/O. Only when the
   deque holds `queue_size` records does the caller append the event to the spill file
   itself (one JSON line, write + flush to the OS): the queue is bounded, the caller still
   never blocks on the database.
2. A background converter thread wakes every `flush_interval` seconds (or as soon as a
   batch is waiting) and turns records into row tuples; an inserter thread writes them
   `batch_size` at a time, one transaction per batch: SQLite with multi-row `INSERT ...
   VALUES (..), (..) ON CONFLICT (event_uuid) DO NOTHING` statements (<= 1000 rows each),
   PostgreSQL with COPY into a temp table + one `INSERT ... SELECT ... ON CONFLICT DO
   NOTHING`. Event ids are time-ordered (atb.logging.ids), so the unique index on
   `event_uuid` grows at its right edge instead of taking random inserts.
3. When an insert fails because the database is unreachable, the journal appends the batch
   and everything queued to the spill file and retries with exponential backoff
   (`retry_initial` .. `retry_max`). While the database stays down, every converter cycle
   moves the queue to the spill file, so memory stays bounded and events are on disk.
4. When an insert succeeds again, spill files are replayed (oldest first) before the
   queue. Every event carries a UUID and the table has a UNIQUE constraint on it, so a
   batch replayed twice (crash during replay, retry after a timeout that did commit) is
   stored exactly once.
5. `stop()` unregisters the listener, drains the queue into the database (or into the
   spill file if the database is down or `stop_timeout` runs out) and fsyncs the file.
   A spill file left behind is replayed by the next journal started on the same path.

Hard-kill window (SIGKILL, OOM, power loss): what is lost is what was not yet on disk:
- events still in the deque: at most those enqueued during the last `flush_interval`
  (default 0.1 s) plus the duration of one batch insert, never more than `queue_size`;
- on power loss / OS crash only: spill lines written within the last `fsync_interval`
  (default 1 s, the converter fsyncs the spill file at most that often) and, with SQLite's
  default `synchronous=NORMAL` in WAL mode, the last committed transactions.
A process kill alone loses nothing that `write()` reached: the OS keeps the page cache.

Rows the database rejects for their content (not for being unreachable) are retried one by
one; the offending rows go to `<spill_path>.rejected.jsonl` so one bad event never blocks
the rest.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import sqlite3
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from itertools import chain
from pathlib import Path
from typing import Any

import orjson
from loguru import logger

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: one journal per spill path
    fcntl = None  # type: ignore[assignment]
from pydantic import Field
from sqlalchemy import Connection, Table
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from atb.config.base import NodeConfig
from atb.db.models.system_events import EventType, Severity, SystemEvent
from atb.db.node import Database, json_dumps
from atb.db.url import default_spill_path
from atb.logging.ids import event_id
from atb.runtime.context import RunContext
from atb.runtime.node import Node

_CURRENT: Journal | None = None


def current_journal() -> Journal | None:
    """The running journal, or None. It also publishes `state()` as ctx.probes "journal"."""
    return _CURRENT


class JournalConfig(NodeConfig):
    queue_size: int = Field(100_000, ge=1, description="events held in memory before spilling")
    batch_size: int = Field(2_000, ge=1, description="rows per insert transaction")
    flush_interval: float = Field(0.1, gt=0, description="writer wakes at least this often (s)")
    spill_path: str | None = Field(
        None,
        description="append-only overflow file; default next to a SQLite db, else in the "
        "run's output dir (or the working dir)",
    )
    retry_initial: float = Field(0.5, gt=0, description="first retry delay after a DB failure")
    retry_max: float = Field(10.0, gt=0, description="retry delay cap (doubles per failure)")
    fsync_interval: float = Field(1.0, ge=0, description="fsync the spill file at most this often")
    stop_timeout: float = Field(
        5.0, gt=0, description="stop() writes to the DB this long, then spills the rest"
    )
    listen: bool = Field(True, description="journal every atb.logging event/WARNING+ record")


# Event names whose seed event_type is more specific than their emitter's family.
_NAMED_TYPES = {
    "engine_start": EventType.ENGINE_START,
    "engine_started": EventType.ENGINE_START,
    "engine_stop": EventType.ENGINE_STOP,
    "engine_stopped": EventType.ENGINE_STOP,
    "strategy_change": EventType.STRATEGY_CHANGE,
    "strategy_changed": EventType.STRATEGY_CHANGE,
    "model_update": EventType.MODEL_UPDATE,
    "model_updated": EventType.MODEL_UPDATE,
    "model_loaded": EventType.MODEL_UPDATE,  # the model a run trades with (atb.ml.events)
    "balance_adjustment": EventType.BALANCE_ADJUSTMENT,
    "alert": EventType.ALERT,
}
_FAMILIES = {"engine", "order", "risk", "data", "decision", "db"}
_TYPES = {t.value for t in EventType}
_SEVERITIES = {s.value for s in Severity}
_TABLE: Table = SystemEvent.__table__  # type: ignore[assignment]

# The journal writes rows as plain tuples in this column order, straight to the DBAPI's
# executemany: SQLAlchemy's per-row parameter processing would cost more than the insert.
COLUMNS = (
    "event_uuid", "timestamp", "event_type", "severity", "message", "name", "logger",
    "details", "context", "component", "strategy", "symbol", "error_code", "stack_trace",
    "alert_sent", "alert_method", "session_id",
)  # fmt: skip
Row = tuple[Any, ...]
_TS = 1
# Column widths, so an over-long value is truncated instead of failing a PostgreSQL batch.
_WIDTHS = {c.name: getattr(c.type, "length", None) for c in _TABLE.columns}
# The stdlib's C-accelerated encoder without json.dumps' per-call keyword handling: the
# fallback for what orjson refuses (non-str keys, ints beyond 64 bits, ...).
_json_encode = json.JSONEncoder(
    separators=(",", ":"), default=str, check_circular=False, ensure_ascii=False
).encode
_dumps = orjson.dumps
_ORJSON_OPTS = orjson.OPT_SERIALIZE_NUMPY  # numpy scalars/arrays as numbers, not strings


def _encode(value: Any) -> str:
    """Compact JSON text of an event's details/context (orjson: ~5x the stdlib's speed).

    Anything without a JSON form becomes its str(), like the stdlib's `default=str`;
    NaN/inf become null (PostgreSQL's jsonb rejects them).
    """
    try:
        return _dumps(value, default=str, option=_ORJSON_OPTS).decode()
    except (TypeError, orjson.JSONEncodeError):
        return _json_encode(value)


def insert_sql(dialect: str, rows: int = 1) -> str:
    """`INSERT ... VALUES (..)[, (..)] ON CONFLICT (event_uuid) DO NOTHING` for `rows` rows
    in the dialect's paramstyle."""
    mark = {"sqlite": "?", "postgresql": "%s"}.get(dialect)
    if mark is None:
        raise RuntimeError(f"journal: unsupported database dialect '{dialect}'")
    values = ", ".join([f"({', '.join([mark] * len(COLUMNS))})"] * rows)
    return (
        f"INSERT INTO {_TABLE.name} ({', '.join(COLUMNS)}) "
        f"VALUES {values} ON CONFLICT (event_uuid) DO NOTHING"
    )


# SQLite: multi-row INSERTs of 1000, 500, 250, 125, 64, ..., 1 rows (1000 x 17 = 17000
# parameters; SQLite >= 3.32 allows 32766, older ones 999). A batch is cut into these
# sizes (a default 2000-row batch is two statements), so a handful of statements stay
# prepared in sqlite3's statement cache whatever the batch size.
_SQLITE_CHUNKS = tuple(
    (n, insert_sql("sqlite", n))
    for n in (1000, 500, 250, 125, 64, 32, 16, 8, 4, 2, 1)
    if n * len(COLUMNS) <= (32766 if sqlite3.sqlite_version_info >= (3, 32) else 999)
)
_chain = chain.from_iterable


def _insert_sqlite(conn: Connection, rows: list[Row]) -> None:
    """The batch as multi-row INSERTs on the raw sqlite3 cursor.

    Why not one executemany: it binds and steps one row at a time, releasing and
    re-taking the GIL around every row's sqlite3_step. While the converter thread runs
    Python, each re-take waits for the interpreter's switch interval (5 ms), so inserts
    crawl whenever conversion runs (a GIL convoy). One statement per 1000 rows re-takes
    the GIL once per chunk, so SQLite's B-tree work (most of the insert) overlaps with
    the converter, and it also saves SQLite's per-statement reset and the module's
    per-row overhead. Binding the parameters is the part that holds the GIL.
    """
    cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        i, total = 0, len(rows)
        for n, sql in _SQLITE_CHUNKS:
            while total - i >= n:
                cur.execute(sql, tuple(_chain(rows[i : i + n])))
                i += n
    finally:
        cur.close()


def _text(value: Any, column: str) -> str | None:
    if value is None:
        return None
    text = value if type(value) is str else str(value)
    if "\x00" in text:  # PostgreSQL text cannot hold NUL
        text = text.replace("\x00", "\\0")
    width = _WIDTHS[column]
    return text[:width] if width and len(text) > width else text


def _timestamp(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return _timestamp(datetime.fromisoformat(value))
    return datetime.now(UTC)


def event_type_of(record: Mapping[str, Any], severity: str) -> str:
    """The seed's event_type: explicit, else by event name, emitter family, then level.

    atb.logging names families `engine_event`, `order_event`, ...; emit() callers may pass
    a seed type (`TEST`, `ALERT`, ...) directly.
    """
    explicit = record.get("event_type")
    family = None
    if isinstance(explicit, str):
        family = explicit.lower().removesuffix("_event")
        upper = explicit.upper()
        if upper in _TYPES and family not in _FAMILIES:
            return upper
    name = record.get("name")
    if isinstance(name, str) and name.lower() in _NAMED_TYPES:
        return _NAMED_TYPES[name.lower()].value
    if family == "engine" and isinstance(name, str):
        # backtest_start / live_started / paper_stop ...: the engine's own life cycle.
        if name.endswith(("_start", "_started")):
            return EventType.ENGINE_START.value
        if name.endswith(("_end", "_stop", "_stopped", "_finished")):
            return EventType.ENGINE_STOP.value
    if family in _FAMILIES:
        return str(family).upper()
    if family == "alert":
        return EventType.ALERT.value
    if severity in ("ERROR", "CRITICAL"):
        return EventType.ERROR.value
    if severity == "WARNING":
        return EventType.WARNING.value
    return EventType.INFO.value


def _stack_trace(record: Mapping[str, Any]) -> str | None:
    if record.get("stack_trace"):
        return str(record["stack_trace"])
    exc = record.get("exception")
    if not exc:
        return None
    if isinstance(exc, Mapping):
        for key in ("traceback", "stack_trace", "stack"):
            if exc.get(key):
                value = exc[key]
                return "".join(value) if isinstance(value, list) else str(value)
        kind, value = exc.get("type"), exc.get("value") or exc.get("message")
        return f"{kind}: {value}" if kind else json_dumps(dict(exc))
    return str(exc)


class RowBuilder:
    """Turns records into row tuples as cheaply as Python allows (the writer's hot loop).

    - atb.logging hands every record of one context the same (cached) context dict, so its
      JSON is computed once per change instead of once per event;
    - event_type is memoised per (event_type, name, severity);
    - strings are only length-checked here; NUL bytes, which PostgreSQL rejects, are
      handled by `sanitize_row` on the rare batch the database refuses.
    """

    def __init__(self, session_id: str | None, ts_text: bool = False) -> None:
        self.session_id = session_id
        # SQLite: timestamps as SQLAlchemy's DateTime text (naive UTC, microseconds),
        # built here so the insert needs no second pass over the rows.
        self.ts_text = ts_text
        self._ctx: Any = None
        self._ctx_json: str | None = None
        self._ctx_cols: tuple[Any, Any, Any, Any] = (None, None, None, None)
        self._types: dict[tuple[Any, Any, Any], str] = {}
        # The second [_ts_lo, _ts_hi) whose text is _ts_prefix.
        self._ts_lo = self._ts_hi = datetime.min.replace(tzinfo=UTC)
        self._ts_prefix = ""

    def __call__(self, record: Mapping[str, Any]) -> Row:
        get = record.get
        context = get("context") or _EMPTY
        if context is not self._ctx:
            self._ctx = context
            if not isinstance(context, Mapping):
                context = {"value": context}
            self._ctx_json = _encode(context) if context else None
            cget = context.get
            # Cut to their column widths once per context, not once per event.
            self._ctx_cols = (
                _text(cget("component"), "component"),
                _text(cget("strategy"), "strategy"),
                _text(cget("symbol"), "symbol"),
                # atb.logging's context calls the run `run_id`; the seed calls it session_id.
                _text(cget("session_id") or cget("run_id") or self.session_id, "session_id"),
            )
        component, strategy, symbol, session = self._ctx_cols
        details = get("details")
        if details is None:
            details = get("fields")
        if details:
            if type(details) is not dict and not isinstance(details, Mapping):
                details = {"value": details}
            fget = details.get
            # (_text(None) is None: only call it for a value.)
            if component is None and fget("component") is not None:
                component = _text(fget("component"), "component")
            if strategy is None and fget("strategy") is not None:
                strategy = _text(fget("strategy"), "strategy")
            if symbol is None and fget("symbol") is not None:
                symbol = _text(fget("symbol"), "symbol")
            error_code = get("error_code") or fget("error_code")
            try:  # _encode, inlined: one call per event
                details_json: str | None = _dumps(
                    details, default=str, option=_ORJSON_OPTS
                ).decode()
            except (TypeError, orjson.JSONEncodeError):
                details_json = _json_encode(details)
        else:
            error_code = get("error_code")
            details_json = None
        severity = get("severity") or get("level") or "INFO"
        key = (get("event_type"), get("name"), severity)
        event_type = self._types.get(key)
        if event_type is None:
            if severity not in _SEVERITIES:
                severity = str(severity).upper()
                if severity not in _SEVERITIES:
                    severity = "WARNING" if severity == "WARN" else "INFO"
            event_type = event_type_of(record, severity)
            if len(self._types) < 10_000:
                self._types[key] = event_type
        elif severity not in _SEVERITIES:
            severity = str(severity).upper()
            if severity not in _SEVERITIES:
                severity = "WARNING" if severity == "WARN" else "INFO"
        ts = get("timestamp")
        if type(ts) is not datetime or ts.tzinfo is None:
            ts = _timestamp(ts)
        if self.ts_text:
            # Formatting a datetime costs more than the rest of the row: reuse the text of
            # the second, which a burst of events shares, and add the microseconds. Two
            # datetime comparisons (field-wise in C for the same tzinfo) find that second.
            if ts.tzinfo is not UTC and ts.utcoffset():
                ts = ts.astimezone(UTC)
            if not self._ts_lo <= ts < self._ts_hi:
                lo = ts.replace(microsecond=0)
                self._ts_lo, self._ts_hi = lo, lo + _SECOND
                self._ts_prefix = lo.isoformat(" ", "seconds")[:19] + "."
            micro = ts.microsecond
            ts = self._ts_prefix + _MICROS[micro // 1000] + _MICROS[micro % 1000]
        message = get("message") or ""
        name = get("name")
        logger_name = get("logger")
        exc = get("exception")
        stack = get("stack_trace") or (_stack_trace(record) if exc else None)
        alert_method = get("alert_method")
        if get("component"):
            component = _text(get("component"), "component")
        if get("session_id"):
            session = _text(get("session_id"), "session_id")
        uid = get("id") or get("event_uuid") or event_id()
        return (
            uid if type(uid) is str else str(uid),
            ts,
            event_type,
            severity,
            message if type(message) is str else str(message),
            name
            if name is None or (type(name) is str and len(name) <= 64)
            else _text(name, "name"),
            logger_name
            if logger_name is None or (type(logger_name) is str and len(logger_name) <= 128)
            else _text(logger_name, "logger"),
            details_json,
            self._ctx_json,
            component,
            strategy,
            symbol,
            _text(error_code, "error_code") if error_code is not None else None,
            None if stack is None else str(stack),
            bool(get("alert_sent", False)),
            _text(alert_method, "alert_method") if alert_method is not None else None,
            session,
        )


def sanitize_row(row: Row) -> Row:
    """The row with NUL bytes escaped and strings cut to their column widths."""
    out = list(row)
    for i, column in enumerate(COLUMNS):
        value = out[i]
        if isinstance(value, str):
            if column in ("details", "context"):
                out[i] = value.replace("\\u0000", "\\\\0")
            else:
                out[i] = _text(value, column)
    return tuple(out)


_EMPTY: Mapping[str, Any] = {}
_SECOND = timedelta(seconds=1)
_MICROS = [f"{i:03d}" for i in range(1000)]  # a timestamp's microseconds, 3 digits at a time


def record_to_row(record: Mapping[str, Any], session_id: str | None = None) -> Row:
    """One `system_events` row tuple (COLUMNS order) from a log record or emit() event."""
    return RowBuilder(session_id)(record)


def row_as_dict(row: Row) -> dict[str, Any]:
    return dict(zip(COLUMNS, row, strict=True))


def sqlite_timestamp(ts: datetime) -> str:
    """SQLAlchemy's SQLite DateTime text: naive UTC, always with microseconds."""
    if ts.utcoffset():
        ts = ts.astimezone(UTC)
    return ts.isoformat(" ", "microseconds")[:26]


def row_to_json(row: Row) -> str:
    """A spill-file line: the row as a JSON array, timestamp in ISO 8601 UTC."""
    out = list(row)
    ts = row[_TS]
    out[_TS] = ts.isoformat() if isinstance(ts, datetime) else ts.replace(" ", "T") + "+00:00"
    return _encode(out)


def row_from_json(line: str, ts_text: bool = False) -> Row:
    values = json.loads(line)
    if not isinstance(values, list) or len(values) != len(COLUMNS):
        raise ValueError("not a journal row")
    ts = _timestamp(values[_TS])
    values[_TS] = sqlite_timestamp(ts) if ts_text else ts
    return tuple(values)


_STAGE = "atb_journal_stage"
_STAGE_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} ON COMMIT DELETE ROWS AS "
    f"SELECT {', '.join(COLUMNS)} FROM {_TABLE.name} WITH NO DATA"
)
_STAGE_COPY = f"COPY {_STAGE} ({', '.join(COLUMNS)}) FROM STDIN"
_STAGE_MERGE = (
    f"INSERT INTO {_TABLE.name} ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} "
    f"FROM {_STAGE} ON CONFLICT (event_uuid) DO NOTHING"
)


def _copy_postgres(conn: Connection, rows: list[Row]) -> None:
    """COPY the batch into a per-connection temp table, then one INSERT ... ON CONFLICT.

    psycopg's executemany costs a round of parameter handling per row; COPY streams the
    batch in one go (several times faster here), and the INSERT ... SELECT keeps the
    exactly-once guarantee that COPY alone cannot give.
    """
    pooled = conn.connection
    cur = pooled.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        if not pooled.info.get(_STAGE):
            cur.execute(_STAGE_DDL)
            pooled.info[_STAGE] = True
        with cur.copy(_STAGE_COPY) as copy:
            write = copy.write_row
            for row in rows:
                write(row)
        cur.execute(_STAGE_MERGE)
    except BaseException:
        # Created in a transaction that will roll back: recreate next time.
        pooled.info.pop(_STAGE, None)
        raise
    finally:
        cur.close()


_CONTENT_ERRORS = {"DataError", "IntegrityError", "ProgrammingError", "NotSupportedError"}


def _lock(fh: Any) -> None:
    if fcntl is not None:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)


def _unlock(fh: Any) -> None:
    if fcntl is not None:
        with contextlib.suppress(OSError, ValueError):
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _is_unavailable(exc: BaseException) -> bool:
    """The database is unreachable (retry later), as opposed to rejecting the rows.

    The COPY path uses the driver's cursor, so raw DBAPI exceptions arrive here too; they
    are classified by their PEP 249 class names.
    """
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        return isinstance(exc, OperationalError | InterfaceError)
    if isinstance(exc, DisconnectionError | TimeoutError | OSError):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & {"OperationalError", "InterfaceError"}:
        return True
    return not names & _CONTENT_ERRORS


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat()


class Journal(Node[JournalConfig]):
    """The `journal` node; see the module docstring for the delivery guarantees.

    Two background threads form a pipeline so that, on a multi-core machine, turning
    records into rows (Python, holds the GIL) overlaps with the database's own work
    (SQLite's B-tree inserts and the PostgreSQL server run without the GIL):

    - `atb-journal` (converter): drains the caller-facing deque, builds row tuples and
      hands batches to the inserter through a 2-batch pipe; while the database is down it
      appends the queue to the spill file instead;
    - `atb-journal-db` (inserter): the only thread that talks to the database: replays
      spill files first, inserts batches, spills a batch that fails, owns the backoff.
    """

    def __init__(self, config: NodeConfig, ctx: RunContext, db: Database) -> None:
        super().__init__(config, ctx)
        self.db = db
        self.spill_path = self._default_spill_path(self.config, ctx, db)
        self.rejected_path = self.spill_path.with_name(self.spill_path.name + ".rejected.jsonl")
        self._queue: deque[Mapping[str, Any]] = deque()
        self._maxsize = self.config.queue_size
        self._batch = self.config.batch_size
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._converter: threading.Thread | None = None
        self._inserter: threading.Thread | None = None
        self._pipe: queue.Queue[list[Row] | None] = queue.Queue(maxsize=2)
        self._spill_lock = threading.Lock()
        self._spill_file: Any = None
        self._last_fsync = 0.0
        self._inflight: list[Row] = []  # converter: taken from the deque, not yet piped
        self._db_inflight: list[Row] = []  # inserter: being written
        self._remove_listener: Callable[[], Any] | None = None
        self._unregister_probe: Callable[[], None] | None = None
        self._dialect = db.engine.dialect.name
        insert_sql(self._dialect)  # fails early on an unsupported dialect
        self._ts_text = self._dialect == "sqlite"
        self._to_row = RowBuilder(ctx.run_id, ts_text=self._ts_text)
        # State for state(): plain numbers, each written by one thread (spill counters under
        # the spill lock) and read racily by the health server: a figure a few events stale
        # is fine, a lock on the callers' path is not.
        self.enqueued = 0
        self.written = 0
        self.spilled = 0
        self.overflowed = 0
        self.replayed = 0
        self.rejected = 0
        self.dropped = 0
        self.errors = 0
        self.spill_pending = self._count_pending()
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.last_write_at: float | None = None
        self.db_available = True
        self._backoff = 0.0
        self._next_retry = 0.0
        # CPU time of each pipeline thread (benchmarks: which stage is the bottleneck).
        self.cpu_seconds = {"convert": 0.0, "insert": 0.0}

    # -- node lifecycle -------------------------------------------------------------

    @staticmethod
    def _default_spill_path(config: JournalConfig, ctx: RunContext, db: Database) -> Path:
        if config.spill_path:
            return Path(config.spill_path).expanduser()
        # Stable per database, so the next run on it replays what this one spilled.
        return default_spill_path(db.url, ctx.output_dir)

    def start(self) -> None:
        global _CURRENT
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        self._inserter = threading.Thread(target=self._insert_loop, name="atb-journal-db")
        self._converter = threading.Thread(target=self._convert_loop, name="atb-journal")
        self._inserter.daemon = self._converter.daemon = True
        self._inserter.start()
        self._converter.start()
        if self.config.listen:
            from atb.logging.hooks import add_record_listener

            self._remove_listener = add_record_listener(self.enqueue)
        _CURRENT = self
        self._unregister_probe = self.ctx.probes.register("journal", self.state)
        if self.spill_pending:
            logger.info(
                "journal: {} spilled events from an earlier run will be replayed from {}",
                self.spill_pending,
                self.spill_path,
            )

    def stop(self) -> None:
        global _CURRENT
        if self._remove_listener is not None:
            with contextlib.suppress(Exception):
                self._remove_listener()
            self._remove_listener = None
        self._stopping.set()
        self._wake.set()
        deadline = time.monotonic() + self.config.stop_timeout + 1.0
        for thread in (self._converter, self._inserter):
            if thread is not None:
                thread.join(max(0.0, deadline - time.monotonic()))
        if self._inserter is not None and self._inserter.is_alive():
            # Stuck in a database call: keep its batch, the pipe and the queue on disk.
            # Replay deduplicates whatever the stuck insert may still commit.
            self._spill_rows(list(self._db_inflight))
            self._drain_pipe_to_spill()
        if self._converter is None or not self._converter.is_alive():
            self._spill_rows(list(self._inflight))
            self._inflight = []
            self._spill_queue()
        self._close_spill(fsync=True)
        if self._unregister_probe is not None:
            self._unregister_probe()
            self._unregister_probe = None
        if _CURRENT is self:
            _CURRENT = None

    # -- the callers' side ------------------------------------------------------------

    def enqueue(self, record: Mapping[str, Any]) -> None:
        """Queue one record; never blocks on the database, never raises.

        This is the atb.logging record listener. The record must not be mutated after.
        """
        dq = self._queue
        if len(dq) >= self._maxsize:
            self._overflow(record)
            return
        dq.append(record)  # deque.append is atomic: no lock on the callers' path
        self.enqueued += 1
        if len(dq) >= self._batch and not self._wake.is_set():
            self._wake.set()

    def emit(self, event: Mapping[str, Any]) -> str:
        """Journal one event from a direct caller (alerts, heartbeat); returns its UUID.

        Accepts the record shape of atb.logging or column names: event_type, severity,
        message, details, component, error_code, stack_trace, alert_sent, alert_method,
        session_id, timestamp, id.
        """
        record = dict(event)
        record.setdefault("id", event_id())
        record.setdefault("timestamp", datetime.now(UTC))
        self.enqueue(record)
        return str(record["id"])

    def _overflow(self, record: Mapping[str, Any]) -> None:
        """The queue is full (database slow or down): the caller writes one spill line."""
        try:
            row = RowBuilder(self.ctx.run_id, ts_text=self._ts_text)(record)
            self._spill_rows([row])
            self.enqueued += 1
            self.overflowed += 1
        except Exception as exc:  # never raise into the caller's logging call
            self.dropped += 1
            self._note_error(f"spill failed: {exc}")

    # -- health ---------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Journal health for /status (also published as ctx.probes "journal").

        queue_depth/queue_size: events in memory; enqueued/written/spilled/replayed/
        rejected/dropped: totals since start (overflowed: spilled by callers because the
        queue was full); spill_pending: lines in spill files not yet in the database;
        db_available: false while backing off; last_error: the current problem (None once
        a write succeeds again), errors/last_error_at: the history; last_write_at: the
        last successful insert (ISO 8601 UTC).
        """
        return {
            "queue_depth": len(self._queue),
            "queue_size": self._maxsize,
            "enqueued": self.enqueued,
            "written": self.written,
            "spilled": self.spilled,
            "overflowed": self.overflowed,
            "spill_pending": self.spill_pending,
            "replayed": self.replayed,
            "rejected": self.rejected,
            "dropped": self.dropped,
            "db_available": self.db_available,
            "last_error": self.last_error,
            "errors": self.errors,
            "last_error_at": _iso(self.last_error_at),
            "last_write_at": _iso(self.last_write_at),
            "spill_path": str(self.spill_path),
            "running": self._converter is not None and self._converter.is_alive(),
        }

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued event is written (or spilled); True if done in time."""
        deadline = time.monotonic() + timeout
        while True:
            idle = not self._queue and not self._inflight and not self._pipe.unfinished_tasks
            if idle or time.monotonic() >= deadline:
                return idle
            self._wake.set()
            time.sleep(0.005)

    # -- converter thread -------------------------------------------------------------

    def _convert_loop(self) -> None:
        while True:
            self._wake.wait(self.config.flush_interval)
            self._wake.clear()
            stopping = self._stopping.is_set()
            t0 = time.thread_time()
            try:
                self._convert(stopping)
            except Exception as exc:  # the pipeline must survive anything
                self._note_error(f"journal converter: {type(exc).__name__}: {exc}")
                self._spill_rows(list(self._inflight))
                self._inflight = []
                self._spill_queue()
            self._maybe_fsync()
            self.cpu_seconds["convert"] += time.thread_time() - t0
            if stopping:
                self._pipe_put(None, time.monotonic() + self.config.stop_timeout)
                return

    def _convert(self, stopping: bool) -> None:
        deadline = time.monotonic() + self.config.stop_timeout if stopping else None
        while self._queue:
            if not self.db_available:
                # Backing off: move the queue to disk so memory stays bounded and a hard
                # kill during the outage loses at most the last flush_interval.
                self._spill_queue()
                return
            rows = self._take(self._batch)
            if not self._pipe_put(rows, deadline):
                self._spill_rows(rows)
                self._inflight = []
                self._spill_queue()
                return
            self._inflight = []

    def _pipe_put(self, rows: list[Row] | None, deadline: float | None) -> bool:
        """Hand a batch to the inserter; waiting is the database's backpressure."""
        while True:
            try:
                self._pipe.put(rows, timeout=0.05)
                return True
            except queue.Full:
                if deadline is not None and time.monotonic() >= deadline:
                    return False
                if rows is not None and not self.db_available:
                    return False

    def _take(self, n: int) -> list[Row]:
        # A new list per batch, published as _inflight so stop() can save it.
        dq, to_row = self._queue, self._to_row
        rows: list[Row] = []
        self._inflight = rows
        pop = dq.popleft
        for _ in range(min(n, len(dq))):
            try:
                rows.append(to_row(pop()))
            except IndexError:
                break
            except Exception as exc:
                self.dropped += 1
                self._note_error(f"unconvertible record dropped: {exc}")
        return rows

    # -- inserter thread --------------------------------------------------------------

    def _insert_loop(self) -> None:
        while True:
            try:
                rows = self._pipe.get(timeout=self.config.flush_interval)
            except queue.Empty:
                self._idle_retry()
                continue
            try:
                if rows is None:  # the converter has stopped
                    return
                self._db_inflight = rows
                t0 = time.thread_time()
                self._insert_batch(rows)
                self.cpu_seconds["insert"] += time.thread_time() - t0
            except Exception as exc:
                self._note_error(f"journal inserter: {type(exc).__name__}: {exc}")
                self._spill_rows(self._db_inflight)
            finally:
                self._db_inflight = []
                self._pipe.task_done()

    def _insert_batch(self, rows: list[Row]) -> None:
        if not self.db_available and time.monotonic() < self._next_retry:
            self._spill_rows(rows)
            return
        if self.spill_pending and not self._replay():
            self._spill_rows(rows)
            return
        if not self._write(rows):
            self._spill_rows(rows)

    def _idle_retry(self) -> None:
        """Nothing to insert: use the time to recover from an outage or drain spill files."""
        if self.db_available and not self.spill_pending:
            return
        if not self.db_available and time.monotonic() < self._next_retry:
            return
        if self.spill_pending:
            self._replay()
        else:
            self.db_available = True  # nothing to prove it with: the next batch will tell

    def _execute(self, rows: list[Row]) -> None:
        with self.db.engine.begin() as conn:
            if self._dialect == "postgresql":
                _copy_postgres(conn, rows)
            else:
                _insert_sqlite(conn, rows)

    def _write(self, rows: list[Row], replay: bool = False) -> bool:
        """Insert rows; False (and backoff) if the database is unreachable."""
        if not rows:
            return True
        written = len(rows)
        try:
            self._execute(rows)
        except Exception as exc:
            if _is_unavailable(exc):
                self._on_unavailable(exc)
                return False
            # The database rejected the content: find the bad rows one by one.
            bad = self._write_one_by_one(rows)
            if bad is None:
                return False
            written -= bad
        if replay:
            self.replayed += written
        self.written += written
        self.last_write_at = time.time()
        if not self.db_available:
            logger.info("journal: database reachable again; replaying spilled events")
        self.db_available = True
        self._backoff = 0.0
        # last_error is the *current* problem (health checks degrade on it); the history
        # stays in errors / last_error_at / rejected.
        self.last_error = None
        return True

    def _write_one_by_one(self, rows: list[Row]) -> int | None:
        """Insert rows singly; quarantine rejected ones. None if the DB went away."""
        bad: list[Row] = []
        for row in rows:
            error: BaseException | None = None
            for attempt in (row, sanitize_row(row)):
                try:
                    self._execute([attempt])
                    error = None
                    break
                except Exception as exc:
                    if _is_unavailable(exc):
                        self._on_unavailable(exc)
                        return None
                    error = exc
            if error is not None:
                self._note_error(f"row rejected: {type(error).__name__}: {str(error)[:200]}")
                bad.append(row)
        if bad:
            self.rejected += len(bad)
            with self._spill_lock, self.rejected_path.open("a", encoding="utf-8") as fh:
                fh.writelines(row_to_json(r) + "\n" for r in bad)
        return len(bad)

    def _on_unavailable(self, exc: BaseException) -> None:
        was_available = self.db_available
        self._backoff = (
            self.config.retry_initial
            if was_available or not self._backoff
            else min(self.config.retry_max, self._backoff * 2)
        )
        self._next_retry = time.monotonic() + self._backoff
        self.db_available = False
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        self._note_error(f"database unavailable: {reason[0] if reason else type(exc).__name__}")
        if was_available:
            logger.warning(
                "journal: database {} unavailable, spilling events to {} (retry in {:.1f}s): {}",
                self.db.redacted_url,
                self.spill_path,
                self._backoff,
                self.last_error,
            )

    def _note_error(self, message: str) -> None:
        self.last_error = message
        self.last_error_at = time.time()
        self.errors += 1

    # -- the spill file ---------------------------------------------------------------

    def _spill_queue(self) -> None:
        while self._queue:
            self._spill_rows(self._take(self._batch))
            self._inflight = []

    def _drain_pipe_to_spill(self) -> None:
        while True:
            try:
                rows = self._pipe.get_nowait()
            except queue.Empty:
                return
            if rows:
                self._spill_rows(rows)
            self._pipe.task_done()

    def _spill_rows(self, rows: Iterable[Row]) -> None:
        lines = [row_to_json(r) + "\n" for r in rows]
        if not lines:
            return
        with self._spill_lock:
            try:
                fh = self._locked_spill_file()
                try:
                    fh.writelines(lines)
                    # flush() hands the lines to the OS: they survive a kill of this process.
                    fh.flush()
                finally:
                    _unlock(fh)
            except OSError as exc:
                self.dropped += len(lines)
                self._note_error(f"spill file {self.spill_path}: {exc}")
                return
            self.spilled += len(lines)
            self.spill_pending += len(lines)

    def _locked_spill_file(self) -> Any:
        """The live spill file, flock-ed, reopened if another journal rotated it away.

        Several processes may share one spill path (a multirun's jobs on one SQLite file).
        Appends and rotations both take the file's lock, and an append first checks that
        its descriptor is still the file at `spill_path`: nothing is ever appended to a file
        that a replay has already rotated away (and may be reading or deleting).
        """
        for _ in range(10):
            if self._spill_file is None:
                self._spill_file = self.spill_path.open("a", encoding="utf-8")
            fh = self._spill_file
            _lock(fh)
            try:
                current = os.stat(self.spill_path).st_ino == os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                current = False
            if current:
                return fh
            _unlock(fh)
            self._spill_file = None
            with contextlib.suppress(OSError):
                fh.close()
        raise OSError(f"spill file {self.spill_path} keeps being rotated away")

    def _maybe_fsync(self) -> None:
        if self._spill_file is None:
            return
        now = time.monotonic()
        if now - self._last_fsync >= self.config.fsync_interval:
            self._last_fsync = now
            with self._spill_lock, contextlib.suppress(OSError, ValueError):
                if self._spill_file is not None:
                    os.fsync(self._spill_file.fileno())

    def _close_spill(self, fsync: bool) -> None:
        with self._spill_lock:
            fh, self._spill_file = self._spill_file, None
            if fh is not None:
                with contextlib.suppress(OSError, ValueError):
                    fh.flush()
                    if fsync:
                        os.fsync(fh.fileno())
                    fh.close()

    def _pending_files(self) -> list[Path]:
        rotated = sorted(self.spill_path.parent.glob(self.spill_path.name + ".replay-*"))
        return [*rotated, self.spill_path] if self.spill_path.exists() else rotated

    def _count_pending(self) -> int:
        total = 0
        for path in self._pending_files():
            with contextlib.suppress(OSError), path.open("rb") as fh:
                total += sum(1 for _ in fh)
        return total

    def _replay(self) -> bool:
        """Write every spill file to the database; False if it went down meanwhile."""
        # Rotate the live file so new spills (converter, callers' overflow) go to a fresh
        # one while this one is read.
        with self._spill_lock:
            if self.spill_path.exists():
                try:
                    fh = self._locked_spill_file()
                    rotated = self.spill_path.with_name(
                        f"{self.spill_path.name}.replay-{time.time_ns():020d}-{os.getpid()}"
                    )
                    os.replace(self.spill_path, rotated)
                    _unlock(fh)
                    fh.close()
                except OSError as exc:
                    self._note_error(f"spill file {self.spill_path}: {exc}")
                self._spill_file = None
        for path in self._pending_files():
            if path == self.spill_path:
                continue  # appended to since the rotation: next time
            if not self._replay_file(path):
                return False
        return True

    def _replay_file(self, path: Path) -> bool:
        rows: list[Row] = []
        lines = 0
        try:
            fh = path.open("r", encoding="utf-8", errors="replace")
        except FileNotFoundError:  # replayed and deleted by another journal on this path
            self.spill_pending = self._count_pending()
            return True
        with fh:
            for line in fh:
                lines += 1
                try:
                    rows.append(row_from_json(line, self._ts_text))
                except (ValueError, TypeError):
                    # A torn last line from a hard kill mid-write: nothing to recover.
                    self.dropped += 1
                    continue
                if len(rows) >= self._batch:
                    if not self._write(rows, replay=True):
                        return False  # the file stays; replayed from its start next time
                    rows = []
        if not self._write(rows, replay=True):
            return False
        path.unlink(missing_ok=True)
        # A partly replayed file is replayed again from its start: the UNIQUE uuid makes
        # that harmless. Only a fully replayed (deleted) file leaves the pending count.
        with self._spill_lock:
            self.spill_pending = max(0, self.spill_pending - lines)
        return True


def format_exception(exc: BaseException) -> str:
    """A stack trace string for `emit(stack_trace=...)` callers."""
    return "".join(traceback.format_exception(exc))
