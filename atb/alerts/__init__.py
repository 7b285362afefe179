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
* `atb.alerts.channels`: `LogChannel` (always on) and `WebhookChannel` (JSON POST).
* `atb.alerts.cli`: `atb alerts test` proves every channel works before going live.
"""
