"""Market access for paper/live runs: the `exchange` node (ccxt, or the offline replay).

`exchange=binance` (any ccxt id via `exchange.id=...`) is `ccxt_exchange.CcxtExchange`;
`exchange=replay` is `replay.ReplayExchange`. Both implement `base.MarketFeed`; only the
ccxt one can place orders (`base.OrderExecutor`).
"""
