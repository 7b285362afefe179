"""Monitoring: a paper/live (or past) session's KPIs, equity, positions, trades, events.

panel serve panels/monitoring.py --args --db-url sqlite:///atb.db --update-interval 5
atb dashboards run monitoring --port 8000
"""

from atb.dashboards.monitoring.app import create_app
from atb.dashboards.settings import settings_from_env

DASHBOARD = {
    "name": "monitoring",
    "description": "live trading metrics, open positions, balance history and recent events",
    "options": ["db_url", "update_interval"],
}

__all__ = ["DASHBOARD", "create_app"]

if __name__.startswith("bokeh_app"):  # executed by `panel serve panels/monitoring.py`
    create_app(settings_from_env("monitoring")).servable(title="atb · monitoring")
