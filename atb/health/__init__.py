"""Health server (`health=on`): liveness, readiness, component status and Prometheus metrics.

- `atb.health.server.HealthServer`: the run-graph node (config in `conf/health/on.yaml`,
  model in `atb.health.config`): binds the port, starts and supervises the server process,
  publishes the loop's state to it over `atb.health.link`.
- `atb.health.process`: the server process (tornado routes in `atb.health.http`, payloads
  in `atb.health.service`, connection limits in `atb.health.limits`, check cache in
  `atb.health.cache`); the JSON API's routes come from `atb.api`.
- `atb.health.checks`: the `/status` components, each a `health.checks` entry (base in
  `atb.health.check_base`, provider-backed ones in `atb.health.probe_checks`).
- `atb.health.metrics`: the Prometheus registry and the helpers the engine, journal and
  alert router call (`record_iteration`, `record_order`, `set_account`, ...).
"""
