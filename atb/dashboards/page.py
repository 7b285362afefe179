"""How every dashboard page opens its database: a header naming the database, and a page
that says what to run when the database or its table is not there yet."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import panel as pn

from atb.dashboards import widgets as w
from atb.dashboards.readonly import DatabaseMissing, describe, readonly_engine, table_names


@dataclass
class Opened:
    header: pn.pane.HTML
    engine: Any = None
    empty: pn.viewable.Viewable | None = None
    """The whole page when there is nothing to show (then `engine` may be None)."""


def open_page(
    title: str,
    db_url: str,
    table: str,
    *,
    missing_hint: str,
    empty: tuple[str, str],
    command: str,
    extra: Callable[[], Sequence[pn.viewable.Viewable]] = tuple,
) -> Opened:
    """The read-only engine for `db_url`, or an empty page: the database is missing
    (`missing_hint`), or it lacks `table` (`empty`: title, hint); `command` records one.
    `extra` builds what an empty page shows below (only when it is shown)."""
    header = w.header(title, describe(db_url))
    try:
        engine = readonly_engine(db_url)
    except DatabaseMissing as exc:
        return Opened(header, None, w.empty_page(header, str(exc), missing_hint, command, *extra()))
    if table not in table_names(engine):
        page = w.empty_page(header, empty[0], empty[1], command, *extra())
        return Opened(header, engine, page)
    return Opened(header, engine)
