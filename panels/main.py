"""`panel serve panels` serves this folder as one app: the dashboards' index at /panels,
each dashboard at /panels?app=<name> (monitoring, backtesting, market_prediction).

panel serve panels --args --db-url sqlite:///atb.db
"""

from atb.dashboards.server import use_local_resources

use_local_resources()  # before Bokeh renders the page: /static URLs, never a CDN

if __name__.startswith("bokeh_app"):  # executed by `panel serve panels`
    from atb.dashboards.folder import folder_page

    folder_page().servable(title="atb · dashboards")
