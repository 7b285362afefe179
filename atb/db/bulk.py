"""The one fast path for inserting many rows, and how each backend wants its values.

Every writer of many rows goes through here: the event journal (row tuples, exactly once
on a unique key), a backtest's trades/orders/positions (columns of a whole run) and the
sample database of tests and benchmarks (row dicts).

- SQLite: multi-row `INSERT ... VALUES (..), (..)` statements of 1000, 500, ..., 1 rows,
  so a handful of statements stay prepared in sqlite3's statement cache whatever the
  batch size, and the GIL is re-taken once per chunk instead of once per row (see
  `sqlite_chunks`). Times go in as the text SQLAlchemy's SQLite `DateTime` stores,
  formatted vectorised (`sqlite_times`); other values through the column type's own
  bind processor (JSON through the engine's redacting serializer).
- PostgreSQL: the journal COPYs into a per-connection temp table and merges with one
  `INSERT ... SELECT ... ON CONFLICT DO NOTHING`; the other writers use SQLAlchemy's
  batched executemany, which psycopg turns into multi-row statements.

Text and the run's redactor: `RowWriter` writes rows as its caller built them (the
journal's records arrive redacted by atb.logging); `insert_columns`/`insert_dicts` redact
text columns themselves on SQLite (once per distinct value, then straight to the cursor)
and go through SQLAlchemy on PostgreSQL, where the engine's hook (atb.db.redacting) does.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, DateTime, Dialect, String, Table, insert

from atb.logging.redaction import get_redactor
from atb.runtime import tuning

Row = tuple[Any, ...]
_chain = chain.from_iterable
# SQLite >= 3.32 allows 32766 parameters per statement, older ones 999.
_MAX_PARAMS = 32766 if sqlite3.sqlite_version_info >= (3, 32) else 999
_BATCH = 20_000  # rows per executemany on the SQLAlchemy path (bounded memory)


def _mark(dialect: str) -> str:
    mark = {"sqlite": "?", "postgresql": "%s"}.get(dialect)
    if mark is None:
        raise RuntimeError(f"unsupported database dialect '{dialect}'")
    return mark


def insert_sql(
    dialect: str, table: str, columns: Sequence[str], rows: int = 1, conflict: str | None = None
) -> str:
    """`INSERT ... VALUES (..)[, (..)] [ON CONFLICT (key) DO NOTHING]` for `rows` rows in
    the dialect's paramstyle."""
    mark = _mark(dialect)
    values = ", ".join([f"({', '.join([mark] * len(columns))})"] * rows)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}"
    return f"{sql} ON CONFLICT ({conflict}) DO NOTHING" if conflict else sql


def sqlite_chunks(
    table: str, columns: Sequence[str], conflict: str | None = None
) -> tuple[tuple[int, str], ...]:
    """(rows, statement) for multi-row INSERTs of 1000, 500, 250, ..., 1 rows.

    Why not one executemany: it binds and steps one row at a time, releasing and re-taking
    the GIL around every row's sqlite3_step. While another thread runs Python, each re-take
    waits for the interpreter's switch interval, so inserts crawl (a GIL convoy). One
    statement per 1000 rows re-takes the GIL once per chunk and saves SQLite's per-statement
    reset and the module's per-row overhead.
    """
    return tuple(
        (n, insert_sql("sqlite", table, columns, n, conflict))
        for n in (1000, 500, 250, 125, 64, 32, 16, 8, 4, 2, 1)
        if n * len(columns) <= _MAX_PARAMS
    )


def _in_chunks(
    chunks: tuple[tuple[int, str], ...], rows: Sequence[Row]
) -> Iterator[tuple[str, Row]]:
    """(statement, flat parameters) covering `rows` with the fewest statements."""
    i, total = 0, len(rows)
    for n, sql in chunks:
        while total - i >= n:
            yield sql, tuple(_chain(rows[i : i + n]))
            i += n


class RowWriter:
    """Inserts row tuples (values already in the backend's form) straight on the DBAPI
    cursor of a SQLAlchemy connection, in the caller's transaction.

    With `conflict` (a unique column), a row already stored is skipped: a batch written
    twice lands once.
    """

    def __init__(
        self, dialect: str, table: Table, columns: Sequence[str], conflict: str | None = None
    ) -> None:
        _mark(dialect)  # fails early on an unsupported dialect
        self.dialect = dialect
        self.table = table.name
        self.columns = tuple(columns)
        self.conflict = conflict
        if dialect == "sqlite":
            tuning.fast_sqlite_binding()  # idempotent; also set by Database.start
            self._chunks = sqlite_chunks(self.table, self.columns, conflict)
        names = ", ".join(self.columns)
        self._stage = f"atb_stage_{self.table}"
        self._stage_ddl = (
            f"CREATE TEMP TABLE IF NOT EXISTS {self._stage} ON COMMIT DELETE ROWS AS "
            f"SELECT {names} FROM {self.table} WITH NO DATA"
        )
        self._stage_copy = f"COPY {self._stage} ({names}) FROM STDIN"
        on_conflict = f" ON CONFLICT ({conflict}) DO NOTHING" if conflict else ""
        self._stage_merge = (
            f"INSERT INTO {self.table} ({names}) SELECT {names} FROM {self._stage}{on_conflict}"
        )

    def __call__(self, conn: Connection, rows: list[Row]) -> None:
        if self.dialect == "postgresql":
            self._copy_postgres(conn, rows)
        else:
            self._insert_sqlite(conn, rows)

    def _insert_sqlite(self, conn: Connection, rows: list[Row]) -> None:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            for sql, params in _in_chunks(self._chunks, rows):
                cur.execute(sql, params)
        finally:
            cur.close()

    def _copy_postgres(self, conn: Connection, rows: list[Row]) -> None:
        """COPY the batch into a per-connection temp table, then one INSERT ... SELECT.

        psycopg's executemany costs a round of parameter handling per row; COPY streams the
        batch in one go (several times faster here), and the INSERT ... ON CONFLICT keeps
        the exactly-once guarantee that COPY alone cannot give.
        """
        pooled = conn.connection
        cur = pooled.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            if not pooled.info.get(self._stage):
                cur.execute(self._stage_ddl)
                pooled.info[self._stage] = True
            with cur.copy(self._stage_copy) as copy:
                write = copy.write_row
                for row in rows:
                    write(row)
            cur.execute(self._stage_merge)
        except BaseException:
            # Created in a transaction that will roll back: recreate next time.
            pooled.info.pop(self._stage, None)
            raise
        finally:
            cur.close()


# -- value encoding per backend ----------------------------------------------------------


def sqlite_timestamp(ts: datetime) -> str:
    """SQLAlchemy's SQLite DateTime text: naive UTC, always with microseconds."""
    if ts.utcoffset():
        ts = ts.astimezone(UTC)
    return ts.isoformat(" ", "microseconds")[:26]


def sqlite_times(index: pd.DatetimeIndex) -> list[str]:
    """`YYYY-MM-DD HH:MM:SS.ffffff` for every time, vectorised (what SQLAlchemy stores)."""
    if index.tz is not None:
        index = index.tz_convert("UTC").tz_localize(None)
    text = np.datetime_as_string(index.values.astype("M8[us]"), unit="us").astype("U26")
    chars = text.view(np.uint32).reshape(len(text), 26)
    chars[:, 10] = ord(" ")  # the ISO 'T' separator -> space, without a per-string loop
    return text.tolist()


def _sqlite_stamps(times: list[Any]) -> list[str | None]:
    present = [t for t in times if t is not None]
    if not present:
        return [None] * len(times)
    texts = iter(sqlite_times(pd.DatetimeIndex(present)))
    return [None if t is None else next(texts) for t in times]


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


def _redacted(values: list[Any], redact: Callable[[str], str]) -> list[Any]:
    """Text values through the run's redactor, once per distinct value (symbols, modes,
    reasons repeat on every row)."""
    done: dict[str, str] = {}
    out = []
    for v in values:
        if v.__class__ is str:
            clean = done.get(v)
            if clean is None:
                clean = done[v] = redact(v)
            v = clean
        out.append(v)
    return out


def _sqlite_values(
    dialect: Dialect, column: Any, value: Any, n: int, redact: Callable[[str], str]
) -> Iterable[Any]:
    """One column's values as SQLite stores them: times as SQLAlchemy's DateTime text,
    text redacted (these rows bypass the engine's redaction hook), others through the
    column type's bind processor (JSON: the engine's redacting serializer)."""
    kind = column.type
    if _scalar(value):
        text = isinstance(value, str) and isinstance(kind, String)
        return itertools.repeat(redact(value) if text else value, n)
    if isinstance(value, pd.DatetimeIndex):
        return sqlite_times(value)
    if isinstance(kind, DateTime):
        return _sqlite_stamps(list(value))  # datetimes or None
    values = _py_values(value)
    if isinstance(kind, String):
        return _redacted(values, redact)
    process = kind.bind_processor(dialect)
    if process is not None:
        return [None if v is None else process(v) for v in values]
    return values


def _driver_values(value: Any, n: int) -> Iterable[Any]:
    """One column's values for a driver that adapts Python values itself (psycopg)."""
    if _scalar(value):
        return itertools.repeat(value, n)
    if isinstance(value, pd.DatetimeIndex):
        utc = value.tz_convert("UTC") if value.tz is not None else value
        return list(utc.to_pydatetime())
    return _py_values(value)


PreparedInsert = Callable[[Connection], None]
"""Rows already in the backend's form and the statements that insert them, run on the
caller's connection: built outside the write transaction, so a SQLite writer holds the
file's lock only while the rows go in (parallel sweep jobs then overlap their recording)."""


def prepare_columns(
    dialect: Dialect, table: Table, columns: Mapping[str, Any]
) -> PreparedInsert | None:
    """Rows given column-wise (arrays/lists, a DatetimeIndex for times, or a scalar
    repeated on every row) made ready to insert; None when there are none."""
    n = max((len(v) for v in columns.values() if not _scalar(v)), default=0)
    if n == 0:
        return None
    names = list(columns)
    if dialect.name != "sqlite":
        lists = [_driver_values(columns[c], n) for c in names]
        rows = [dict(zip(names, row, strict=True)) for row in zip(*lists, strict=False)]
        stmt = insert(table)

        def run_driver(conn: Connection) -> None:
            for start in range(0, n, _BATCH):
                conn.execute(stmt, rows[start : start + _BATCH])

        return run_driver
    redact = get_redactor().redact_text
    lists = [_sqlite_values(dialect, table.c[c], columns[c], n, redact) for c in names]
    prep = dialect.identifier_preparer
    statements = list(
        _in_chunks(
            sqlite_chunks(prep.format_table(table), [prep.quote(c) for c in names]),
            list(zip(*lists, strict=False)),
        )
    )

    def run_sqlite(conn: Connection) -> None:
        cur = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            for sql, params in statements:
                cur.execute(sql, params)
        finally:
            cur.close()

    return run_sqlite


def insert_columns(conn: Connection, table: Table, columns: Mapping[str, Any]) -> None:
    """Insert rows given column-wise, in the caller's transaction (see prepare_columns)."""
    prepared = prepare_columns(conn.dialect, table, columns)
    if prepared is not None:
        prepared(conn)


def insert_dicts(conn: Connection, table: Table, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert row dicts (every row with the same keys), `_BATCH` rows at a time."""
    it = iter(rows)
    while batch := list(itertools.islice(it, _BATCH)):
        names = list(batch[0])
        columns = {c: [row.get(c) for row in batch] for c in names}
        insert_columns(conn, table, columns)
