"""The `live` node: the paper / live trading loop (main node of mode=paper and mode=live).

Every `check_interval` seconds the loop (loop.py):

1. settles orders whose outcome the exchange could not confirm last time (the execution's
   `reconcile`);
2. fetches the newest closed candles from the `exchange` node (retries live there);
3. beats the heartbeat (after the fetch: a loop spinning on no data is not healthy);
4. checks freshness (freshness.py): nothing is traded on stale candles;
5. steps the shared decision path once per new closed bar (the backtest's path: strategy
   on the trailing window, risk/sizing, orders, booking), then `submit`s that bar's orders
   to the execution: paper's simulated fills (simulated.py) fill them at the next bar's
   open like a backtest, live's exchange execution (exchange_execution.py) sends them now;
6. records the bar (recording.py → recorder.py): orders, positions, trades, decision,
   prediction, account row and the session state, in one transaction.

node.py assembles a session and runs it; resume.py takes over the previous session and
settles orders dead sessions left pending; account.py holds the session's account and
its restart snapshot; config.py its settings.
"""

from atb.engine.live.config import LiveEngineConfig
from atb.engine.live.loop import LoopFailed
from atb.engine.live.node import LiveEngine

__all__ = ["LiveEngine", "LiveEngineConfig", "LoopFailed"]
