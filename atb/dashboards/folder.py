"""`panel serve panels` (the folder): one Bokeh app, an index of the dashboards, each one a link.

Bokeh serves a folder as a single app (`/panels`, built by `panels/main.py`), so the index
and every dashboard live behind that one URL: `/panels` lists them, `/panels?app=monitoring`
opens one with the same settings as `panel serve panels/monitoring.py` (CLI `--args`, then
`ATB_DASHBOARD_*`, then the config group). Everything is served by the local server: no
fonts, scripts or logos from a CDN.
"""

from __future__ import annotations

import html
from typing import Any

import panel as pn

from atb.dashboards import widgets as w
from atb.dashboards.discovery import app_factory, discover
from atb.dashboards.server import use_local_resources
from atb.dashboards.settings import settings_from_env


def _requested_app() -> str:
    args = pn.state.session_args or {}
    raw = (args.get("app") or [b""])[0]
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def folder_page() -> Any:
    use_local_resources()
    dashboards = [d for d in discover() if d.error is None]
    wanted = _requested_app()
    for info in dashboards:
        if info.name == wanted:
            return app_factory(info)(settings_from_env(info.name))
    items = "".join(
        f'<li><a href="?app={html.escape(d.name)}">{html.escape(d.name)}</a> — '
        f"{html.escape(d.description)}</li>"
        for d in dashboards
    )
    unknown = f"<p>No dashboard named <code>{html.escape(wanted)}</code>.</p>" if wanted else ""
    return pn.Column(
        w.header("atb · dashboards", "panel serve panels"),
        w.html_pane(f'{unknown}<ul class="atb-index">{items}</ul>'),
        sizing_mode="stretch_width",
    )
