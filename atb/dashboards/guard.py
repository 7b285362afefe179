"""A dashboard page never shows a bare traceback, and widget callbacks run where Bokeh allows.

`guarded_page(name, factory)`: builds the page; an exception is logged through atb (component
`dashboards`, with the traceback in the log record) and the page becomes a one-line notice.

`in_document(fn, notice)`: a widget watcher that runs `fn` on the document's next tick.
Panel calls watchers of client-side changes (typing in a search box, picking a run) without
holding the Bokeh document lock, and assigning a raw `ColumnDataSource.data` there raises
`RuntimeError: _pending_writes should be non-None …` — the filter never applied. On the next
tick the lock is held. An exception in `fn` is logged and shown in `notice` as one line.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

import panel as pn
from loguru import logger

from atb.logging.context import use_context


def notice_html(what: str, exc: BaseException) -> str:
    text = f"{what}: {type(exc).__name__}: {exc}".splitlines()[0][:300]
    return (
        '<div class="atb-page-error" role="alert" style="color:#a40000;padding:6px 0">'
        f"⚠ {html.escape(text)} (details in the dashboard server's log)</div>"
    )


def log_failure(what: str, exc: BaseException) -> None:
    with use_context(component="dashboards"):
        logger.opt(exception=exc).error(
            "dashboard {} failed: {}: {}", what, type(exc).__name__, exc
        )


def guarded_page(name: str, factory: Callable[..., Any]) -> Callable[..., Any]:
    def build(*args: Any, **kwargs: Any) -> Any:
        try:
            return factory(*args, **kwargs)
        except Exception as exc:
            log_failure(f"page '{name}'", exc)
            return pn.Column(
                pn.pane.HTML(notice_html(f"The {name} page could not be built", exc)),
                sizing_mode="stretch_width",
            )

    build.__name__ = getattr(factory, "__name__", "create_app")
    build.__doc__ = factory.__doc__
    return build


def in_document(fn: Callable[[], None], notice: Any, what: str) -> Callable[..., None]:
    """A param watcher / Bokeh on_change callback that runs `fn()` under the document lock."""

    def run() -> None:
        try:
            fn()
        except Exception as exc:
            log_failure(what, exc)
            notice.object = notice_html(what, exc)
        else:
            if notice.object and "atb-page-error" in str(notice.object):
                notice.object = ""

    def callback(*_args: Any) -> None:
        doc = pn.state.curdoc
        if doc is not None and doc.session_context is not None:
            doc.add_next_tick_callback(run)
        else:
            run()

    return callback
