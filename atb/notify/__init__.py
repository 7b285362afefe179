"""The `notify` node: trade, rejection, session and daily-summary notifications.

Follow the `notify` config key (conf/notify/default.yaml): `atb.notify.node.Notifier` is the
node, `config` its settings, `messages` the text of each route, `limits` the per-route
rate limit and the summary period. Notifications are the second
kind of route next to alerts: every matching event is one message, with no incident
behind it and no de-duplication (two distinct trades are two messages), only a rate
limit per route so a storm (a rejection loop) cannot flood a phone. What the limit holds
back is counted and reported in one "N more ... held back" message once the window
frees up.

It listens to the same event stream as the alert router (`atb.logging.hooks`) and
delivers through the router's channels (`alerts.channels`: the same workers, total
deadline, retries, circuit breaker and /status entries); the trading loop pays one
name check and a deque append per event. Off in backtests (`notify.modes`).

Routes and the events they listen to:

* trade_opened  ← open_position   (side, size, price, stop/take, reason)
* trade_closed  ← close_position  (side, size, exit price, PnL and %, reason)
* order_rejected ← order_rejected (side, size, kind, reason, exchange code)
* session_started ← engine_start, session_stopped ← engine_stop
* daily_summary: at `daily_summary.at` (PnL, trades, win rate, realized drawdown, open
  positions, balance) for the period since the previous summary or the session start.
"""
