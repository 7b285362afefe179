"""The shipped monitoring stack, for real: Prometheus (deploy/prometheus) scrapes a paper
session on the test exchange with the API token, the candles freeze, AtbStaleData fires,
Alertmanager (deploy/alertmanager, rendered by its own script) delivers it to a webhook on
127.0.0.1, and it resolves once candles flow again. The same session proves every metric the
rules and the Grafana dashboard query exists in a live /metrics scrape.

Only timings differ from the shipped files: 1 s scrape/evaluation and Alertmanager grouping,
so the round trip takes seconds instead of minutes.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from atb_testkit import FakeBinance, synthetic_candles
from deploy_helpers import DEPLOY, Proc, atb_cmd, clean_env, free_port, http_get

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (shutil.which("prometheus") and shutil.which("prometheus-alertmanager")),
        reason="needs Debian's prometheus and prometheus-alertmanager (.ci/run installs them)",
    ),
]

TOKEN = "prom-scrape-token-6d2e9a"
PROMQL_FILES = (
    DEPLOY / "prometheus" / "rules" / "atb.yml",
    DEPLOY / "grafana" / "dashboards" / "atb.json",
)
# Created by Prometheus itself, not by atb.
SERVER_SIDE = {"up", "ALERTS"}
# Labelled by what happened (reason, error kind, channel): declared from the start, with
# samples only once such an event occurs.
EVENT_LABELLED = {"atb_order_rejections_total", "atb_exchange_errors_total", "atb_alerts_total"}


@dataclass
class Receiver:
    """Alertmanager's webhook target: records every notification it is sent."""

    port: int
    received: list[dict[str, Any]] = field(default_factory=list)

    def alerts(self, name: str, status: str) -> list[dict[str, Any]]:
        return [
            a
            for n in self.received
            for a in n.get("alerts", [])
            if a["labels"].get("alertname") == name and a["status"] == status
        ]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    rec = Receiver(port)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            rec.received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()


class Clock:
    """Reveal one candle every `every` seconds: a market that keeps trading."""

    def __init__(self, fake: FakeBinance, every: float = 0.3) -> None:
        self.fake, self.every = fake, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.fake.advance(1)

    def __enter__(self) -> Clock:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(2)


def prometheus_config(tmp: Path, atb_port: int, am_port: int) -> Path:
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    token_file = tmp / "atb_api_token"
    token_file.write_text(TOKEN)
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / "prometheus" / "rules" / "*.yml")]
    config["alerting"]["alertmanagers"][0]["static_configs"] = [
        {"targets": [f"127.0.0.1:{am_port}"]}
    ]
    (atb_job,) = [j for j in config["scrape_configs"] if j["job_name"] == "atb"]
    atb_job["static_configs"] = [{"targets": [f"127.0.0.1:{atb_port}"]}]
    atb_job["authorization"]["credentials_file"] = str(token_file)
    path = tmp / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def alertmanager_template(tmp: Path) -> Path:
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    config["route"].update(group_wait="1s", group_interval="1s")
    path = tmp / "alertmanager.yml"
    # The URL placeholder stays for render-config.sh to fill in, as in the container.
    path.write_text(yaml.safe_dump(config))
    assert "${ALERT_WEBHOOK_URL}" in path.read_text()
    return path


def query(port: int, expr: str) -> list[dict[str, Any]]:
    code, _, body = http_get(port, "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    if code != 200:  # 503 while Prometheus starts: wait_until tries again
        raise ValueError(f"Prometheus answered {code}: {body[:200]!r}")
    return json.loads(body)["data"]["result"]


def promql_metric_names(text: str) -> set[str]:
    """Metric names in PromQL expressions: identifiers that select series."""
    exprs: list[str] = []
    if text.lstrip().startswith("{"):

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key in ("expr", "query") and isinstance(value, str):
                        exprs.append(value)
                    walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(json.loads(text))
    else:
        for group in yaml.safe_load(text)["groups"]:
            exprs += [rule["expr"] for rule in group["rules"]]
    names: set[str] = set()
    for expr in exprs:
        expr = re.sub(r'"[^"]*"', '""', expr)  # label values are not names
        expr = re.sub(r"\{[^}]*\}", "{}", expr)  # neither are label names
        expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
        expr = re.sub(r"\[[^\]]*\]", "", expr)
        for token in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
            if token.startswith(("atb_", "process_", "python_")) or token in SERVER_SIDE:
                names.add(token)
    return names


@dataclass
class Stack:
    atb: Proc
    prometheus: Proc
    alertmanager: Proc
    atb_port: int
    prom_port: int
    fake: FakeBinance
    receiver: Receiver


@pytest.fixture
def stack(tmp_path: Path, receiver: Receiver) -> Iterator[Stack]:
    atb_port, prom_port, am_port = free_port(), free_port(), free_port()
    with FakeBinance(candles=synthetic_candles(2000), warmup=200) as fake, Clock(fake):
        env = clean_env(
            PORT=str(atb_port), ATB_API_TOKEN=TOKEN, ATB_OUTPUT_DIR=str(tmp_path / "outputs"),
            BINANCE_API_KEY=fake.api_key, BINANCE_API_SECRET=fake.api_secret,
        )  # fmt: skip
        atb = Proc(
            [*atb_cmd("live-health", "--", "sma_crossover", "--paper-trading"),
             "strategy.fast=3", "strategy.slow=8", f"exchange.base_url={fake.url}",
             "live.check_interval=0.2", "live.stale_after=1e12", "live.stale_polls=3",
             "health.refresh_interval=1", f"db.url=sqlite:///{tmp_path / 'atb.db'}"],
            env, tmp_path, tmp_path / "atb.log",
        )  # fmt: skip
        am_env = clean_env(
            ALERT_WEBHOOK_URL=f"http://127.0.0.1:{receiver.port}/hook?src=am&x=1",
            ALERTMANAGER_RENDERED_CONFIG=str(tmp_path / "alertmanager.rendered.yml"),
        )
        alertmanager = Proc(
            ["sh", str(DEPLOY / "alertmanager" / "render-config.sh"),
             str(alertmanager_template(tmp_path)), "prometheus-alertmanager",
             f"--storage.path={tmp_path / 'am'}", f"--web.listen-address=127.0.0.1:{am_port}",
             "--cluster.listen-address="],
            am_env, tmp_path, tmp_path / "alertmanager.log",
        )  # fmt: skip
        prometheus = Proc(
            ["prometheus", f"--config.file={prometheus_config(tmp_path, atb_port, am_port)}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{prom_port}"],
            clean_env(), tmp_path, tmp_path / "prometheus.log",
        )  # fmt: skip
        stack = Stack(atb, prometheus, alertmanager, atb_port, prom_port, fake, receiver)
        try:
            yield stack
        finally:
            for proc in (prometheus, alertmanager, atb):
                proc.stop()


def test_frozen_candles_fire_and_resolve_through_alertmanager(stack: Stack) -> None:
    def up() -> bool:
        return any(r["value"][1] == "1" for r in query(stack.prom_port, 'up{job="atb"}'))

    stack.prometheus.wait_until(up, 120, "Prometheus scraping atb with the token")
    stack.atb.wait_until(
        lambda: query(stack.prom_port, "atb_loop_iterations_total > 3"), 60, "loop iterations"
    )
    assert query(stack.prom_port, "atb_data_stale == 0"), "no stale gauge before the fault"
    started = time.monotonic()

    stack.fake.faults.freeze_candles()
    firing = stack.alertmanager.wait_until(
        lambda: stack.receiver.alerts("AtbStaleData", "firing"), 45, "AtbStaleData delivered"
    )
    fired_after = time.monotonic() - started
    labels = firing[0]["labels"]
    assert labels["severity"] == "warning" and labels["symbol"] == "BTCUSDT"
    assert labels["strategy"] == "sma_crossover" and labels["mode"] == "paper"
    assert "market data is stale" in firing[0]["annotations"]["summary"]
    assert not stack.receiver.alerts("AtbStaleData", "resolved")

    stack.fake.faults.unfreeze_candles()
    stack.alertmanager.wait_until(
        lambda: stack.receiver.alerts("AtbStaleData", "resolved"), 45, "AtbStaleData resolved"
    )
    assert fired_after < 45
    # Nothing else fired along the way: the loop kept beating, the database stayed up.
    others = {
        a["labels"]["alertname"]
        for n in stack.receiver.received
        for a in n["alerts"]
        if a["labels"]["alertname"] != "AtbStaleData"
    }
    assert others == set()
    assert TOKEN not in stack.atb.output()


def test_every_metric_in_rules_and_grafana_exists_in_a_live_scrape(stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    stack.atb.wait_until(
        lambda: b"atb_loop_iterations_total{" in http_get(stack.atb_port, "/metrics", headers)[2],
        90,
        "a scrape with loop iterations",
    )
    time.sleep(2)  # a background refresh of the health checks
    text = http_get(stack.atb_port, "/metrics", headers)[2].decode()
    sampled = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line[:1] != "#"}
    declared = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    assert not [line for line in text.splitlines() if "_created" in line]
    assert "atb_build_info{" in text and 'version="' in text

    wanted: dict[str, set[str]] = {}
    for path in PROMQL_FILES:
        names = promql_metric_names(path.read_text())
        assert len(names) >= 5, (path, names)
        for name in names - SERVER_SIDE:
            wanted.setdefault(name, set()).add(path.name)
    missing = {n: f for n, f in wanted.items() if n not in sampled and n not in EVENT_LABELLED}
    assert not missing, f"queried but not in a live scrape: {missing}"
    for name in EVENT_LABELLED & wanted.keys():
        family = name.removesuffix("_total")
        assert family in declared or name in declared, name
    # The scrape carries the exchange latency histogram by endpoint and outcome.
    assert re.search(
        r'atb_exchange_request_duration_seconds_count\{[^}]*endpoint="fetch_ohlcv"[^}]*outcome="ok"',
        text,
    )
