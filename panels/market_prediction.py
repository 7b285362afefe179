"""Market prediction: the ML model's recorded predictions, accuracy and feature drift.

panel serve panels/market_prediction.py --args --db-url sqlite:///atb.db
atb dashboards run market_prediction --port 8002
"""

from atb.dashboards.market_prediction.app import create_app
from atb.dashboards.settings import settings_from_env

DASHBOARD = {
    "name": "market_prediction",
    "description": "ML prediction confidence, accuracy and feature diagnostics",
    "options": ["db_url", "update_interval"],
}

__all__ = ["DASHBOARD", "create_app"]

if __name__.startswith("bokeh_app"):  # executed by `panel serve panels/market_prediction.py`
    create_app(settings_from_env("market_prediction")).servable(title="atb · market prediction")
