"""Backtesting: the run registry, a run's curves and trades, comparisons, sweeps, CSV exports.

panel serve panels/backtesting.py --args --db-url sqlite:///atb.db --logs-dir logs
atb dashboards run backtesting --port 8001
"""

from atb.dashboards.backtesting.app import create_app
from atb.dashboards.settings import settings_from_env

DASHBOARD = {
    "name": "backtesting",
    "description": "strategy results saved by the backtester (database runs or CSV exports)",
    "options": ["db_url", "logs_dir"],
}

__all__ = ["DASHBOARD", "create_app"]

if __name__.startswith("bokeh_app"):  # executed by `panel serve panels/backtesting.py`
    create_app(settings_from_env("backtesting")).servable(title="atb · backtesting")
