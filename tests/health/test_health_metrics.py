"""/metrics: the helper API, labels, and a Prometheus text-format parser's verdict."""

from __future__ import annotations

from typing import Any

import pytest
from health_helpers import PROBES, make_config, request, running
from prometheus_client.parser import text_string_to_metric_families

from atb.health import metrics

# Each test starts a process of its own (the health server, a session or the CLI): e2e.
pytestmark = pytest.mark.e2e


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(parsed: dict[Any, float], name: str, **labels: str) -> float:
    for (n, lab), v in parsed.items():
        if n == name and all(dict(lab).get(k) == val for k, val in labels.items()):
            return v
    raise KeyError(f"{name} {labels} not in {sorted({n for n, _ in parsed})}")


def test_metrics_endpoint_parses_and_carries_run_labels() -> None:
    with running(make_config(checks=[])) as server:
        PROBES.heartbeat.start(interval=1)
        PROBES.heartbeat.beat()
        for d in (0.01, 0.2, 3.0):
            metrics.record_iteration(d)
        metrics.record_order("filled")
        metrics.record_order("filled")
        metrics.record_order("rejected")
        metrics.record_rejection("max_position")
        metrics.record_exchange_error("NetworkError")
        metrics.record_exchange_error(TimeoutError("slow"))
        metrics.set_account(balance=9500.5, equity=10100.0, drawdown=0.05, open_positions=1)
        metrics.set_candle_age(42.0)
        metrics.record_alert("webhook", "failed")
        PROBES.register("journal", lambda: {"queue_depth": 4, "spilled": 2, "written": 99})

        resp = request(server, "/metrics")
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/plain; version=")
        text = resp.body.decode()
        types = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
        assert len(types) == len(set(types))  # the spliced page has each family once
        parsed = samples(text)
        run = {"mode": "paper", "strategy": "ml_basic", "symbol": "BTCUSDT"}
        assert value(parsed, "atb_run_info", **run) == 1
        assert value(parsed, "atb_loop_iterations_total", **run) == 3
        assert value(parsed, "atb_loop_iteration_duration_seconds_count", **run) == 3
        assert value(parsed, "atb_loop_iteration_duration_seconds_bucket", le="0.25", **run) == 2
        assert value(parsed, "atb_orders_total", status="filled", **run) == 2
        assert value(parsed, "atb_orders_total", status="rejected", **run) == 1
        assert value(parsed, "atb_order_rejections_total", reason="max_position", **run) == 1
        assert value(parsed, "atb_exchange_errors_total", kind="NetworkError", **run) == 1
        assert value(parsed, "atb_exchange_errors_total", kind="TimeoutError", **run) == 1
        assert value(parsed, "atb_balance", **run) == 9500.5
        assert value(parsed, "atb_equity", **run) == 10100.0
        assert value(parsed, "atb_drawdown_ratio", **run) == 0.05
        assert value(parsed, "atb_open_positions", **run) == 1
        assert value(parsed, "atb_candle_age_seconds", **run) == 42.0
        assert value(parsed, "atb_journal_queue_depth", **run) == 4
        assert value(parsed, "atb_journal_spilled_total", **run) == 2
        assert value(parsed, "atb_journal_written_total", **run) == 99
        assert value(parsed, "atb_alerts_total", channel="webhook", outcome="failed") == 1
        assert 0 <= value(parsed, "atb_loop_heartbeat_age_seconds", **run) < 5
        assert request(server, "/metrics", method="HEAD").body == b""


def test_health_check_results_are_metrics() -> None:
    checks = [{"_target_": "atb.health.checks.ConfigCheck"}]
    with running(make_config(checks=checks)) as server:
        request(server, "/status")
        parsed = samples(request(server, "/metrics").body.decode())
        assert value(parsed, "atb_health_check_status", component="config") == 0


def test_helpers_take_explicit_labels_and_tolerate_none() -> None:
    metrics.set_run_labels(mode="live", strategy="sma_crossover", symbol="BTCUSDT")
    metrics.record_iteration(0.5, symbol="ETHUSDT")
    metrics.set_account(balance=None, equity=1.0)
    metrics.set_candle_age(None)
    metrics.set_journal(queue_depth=None, written=5)
    metrics.set_journal(spilled=1)
    metrics.record_order("weird\nstatus with a very long second line")
    parsed = samples(metrics.render().decode())
    assert value(parsed, "atb_loop_iterations_total", symbol="ETHUSDT", mode="live") == 1
    assert value(parsed, "atb_equity", strategy="sma_crossover") == 1.0
    assert value(parsed, "atb_journal_written_total") == 5
    assert value(parsed, "atb_journal_spilled_total") == 1
    assert value(parsed, "atb_orders_total", status="weird") == 1
    with pytest.raises(KeyError):
        value(parsed, "atb_balance")


def test_registry_is_dedicated() -> None:
    from prometheus_client import REGISTRY as GLOBAL

    metrics.record_iteration(0.1)
    assert GLOBAL.get_sample_value("atb_loop_iterations_total") is None
