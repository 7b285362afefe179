"""The Panel/Bokeh dashboards: discovery, serving, the `dashboards` run-graph node, and each
dashboard's queries and view models.

Layout: `panels/NAME.py` is the thin servable entry point (and declares the dashboard's
metadata); `atb/dashboards/NAME/` holds its queries (`queries.py`, SQLAlchemy Core),
its view model (`model.py`, plain Python, testable without a browser) and its Panel
layout (`app.py`). Importing this package stays cheap: nothing here imports panel.
"""

from __future__ import annotations

OPTIONS: tuple[str, ...] = ("db_url", "update_interval", "logs_dir")
"""Per-dashboard options the `atb dashboards run` command forwards when supported."""
