"""Alerts: rules over the event stream, notifications through channels.

Follow the `alerts` config key (conf/alerts/default.yaml):

* `atb.alerts.router.AlertRouter` is the node. It listens to every event record
  (`atb.logging.hooks`), evaluates the `rules` on its own thread and hands notifications
  to the `channels`, each delivered by its own worker (queue, timeout, retry with
  backoff, circuit breaker). The trading loop only ever pays for a deque append.
* `atb.alerts.rules`: `EventCountRule` (≥ N matching events in a window, per group),
  `HeartbeatSilenceRule` (loop stalled), `JournalSpillRule` (database down, journal
  spilling to disk).
* `atb.alerts.incidents`: de-duplication, re-notification and resolution.
* `atb.alerts.channels`: `LogChannel` (always on) and `WebhookChannel` (JSON POST, total
  deadline per attempt via `atb.alerts.http`); `atb.alerts.apprise_channel.AppriseChannel`:
  Telegram, Discord, Slack, email, … (one channel per Apprise URL, `atb[notify]`).
* `atb.notify.node.Notifier` is the `notify` node (conf/notify/): trade, rejection,
  session and daily-summary notifications through the same channels, rate-limited per
  route, never de-duplicated.
* `atb.alerts.cli`: `atb alerts test` proves every channel (and every Apprise URL) works
  before going live.
"""
