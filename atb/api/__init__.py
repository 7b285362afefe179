"""The read-only JSON API (`/api/metrics`, `/api/positions`, `/api/trades`, `/api/balance`,
`/api/system/status`): schemas (pydantic, published as JSON Schema), queries over the run
records, and the tornado handlers the health and dashboards servers mount."""
