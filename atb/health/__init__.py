"""Health server (`health=on`): liveness, readiness, component status and Prometheus metrics.

- `atb.health.server.HealthServer`: the run-graph node (config in `conf/health/on.yaml`).
- `atb.health.checks`: the `/status` components, each a `health.checks` entry.
- `atb.health.metrics`: the Prometheus registry and the helpers the engine, journal and
  alert router call (`record_iteration`, `record_order`, `set_account`, ...).
"""
