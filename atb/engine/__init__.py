"""The decision path shared by every mode (strategy -> risk -> orders -> fills -> portfolio).

`decision.DecisionPath.on_bar` is the per-bar step; `backtest.Backtest` drives it over
history, the paper/live engine drives it from a feed.
"""
