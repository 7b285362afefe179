"""deploy/ as shipped: the real tools check the Prometheus and Alertmanager files, the
Dockerfile and compose file are parsed, and every atb service's exact command runs on this
host (127.0.0.1 ports, a throwaway PostgreSQL, the test exchange) with the environment the
compose file gives it. No container runtime here: what the images add (a python, a user)
is checked by reading the Dockerfile.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from atb_testkit import FakeBinance, synthetic_candles
from atb_testkit.login import dashboard_login
from deploy_helpers import DEPLOY, ROOT, Proc, clean_env, free_port, http_get, wait_port

COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
ATB_SERVICES = [name for name, svc in SERVICES.items() if svc.get("image") == "atb:latest"]
TEST_ENV = dict(
    line.split("=", 1)
    for line in (DEPLOY / "env.example").read_text().splitlines()
    if line and not line.startswith("#")
)


def needs(tool: str) -> Any:
    return pytest.mark.skipif(shutil.which(tool) is None, reason=f"needs {tool} (.ci/run)")


# -- the Prometheus / Alertmanager / Grafana files ---------------------------------------------


@needs("promtool")
def test_promtool_checks_config_rules_and_rule_tests(tmp_path: Path) -> None:
    # The token file exists only inside the container: point it at a real file.
    config = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    assert "credentials_file: /run/secrets/atb_api_token" in config
    token = tmp_path / "token"
    token.write_text("x")
    checked = tmp_path / "prometheus" / "prometheus.yml"
    shutil.copytree(DEPLOY / "prometheus", checked.parent)
    checked.write_text(config.replace("/run/secrets/atb_api_token", str(token)))
    for cmd in (
        ["promtool", "check", "config", str(checked)],
        ["promtool", "check", "rules", str(DEPLOY / "prometheus" / "rules" / "atb.yml")],
        ["promtool", "test", "rules", str(DEPLOY / "prometheus" / "rules_test.yml")],
    ):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "SUCCESS" in proc.stdout + proc.stderr


def test_every_rule_has_a_promtool_test_and_mirrors_a_builtin_rule() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules" / "atb.yml").read_text())
    names = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((DEPLOY / "prometheus" / "rules_test.yml").read_text())
    tested = {
        case["alertname"]
        for t in tests["tests"]
        for case in t["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert names == tested
    builtin = yaml.safe_load((ROOT / "conf" / "alerts" / "default.yaml").read_text())
    builtin_names = {r["name"] for r in builtin["rules"]}
    mirrored = {
        "loop_stalled": "AtbLoopStalled", "stale_data": "AtbStaleData",
        "repeated_order_rejections": "AtbRepeatedOrderRejections",
        "journal_spilling": "AtbJournalSpilling",
        "database_connection_failures": "AtbDatabaseDown", "max_drawdown_breach": "AtbMaxDrawdown",
    }  # fmt: skip
    assert set(mirrored) <= builtin_names
    assert set(mirrored.values()) <= names


@needs("amtool")
def test_alertmanager_config_renders_the_webhook_url_and_checks(tmp_path: Path) -> None:
    url = "https://hooks.example.org/atb?a=1&b=x|y#frag"
    rendered = tmp_path / "am.yml"
    env = clean_env(ALERT_WEBHOOK_URL=url, ALERTMANAGER_RENDERED_CONFIG=str(rendered))
    proc = subprocess.run(
        ["sh", str(DEPLOY / "alertmanager" / "render-config.sh"),
         str(DEPLOY / "alertmanager" / "alertmanager.yml"), "echo", "started"],
        capture_output=True, text=True, env=env, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"started --config.file={rendered}"
    config = yaml.safe_load(rendered.read_text())
    assert config["receivers"][0]["webhook_configs"][0]["url"] == url
    checked = subprocess.run(
        ["amtool", "check-config", str(rendered)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    missing = subprocess.run(
        ["sh", str(DEPLOY / "alertmanager" / "render-config.sh"), str(rendered), "true"],
        capture_output=True, text=True, env=clean_env(), timeout=30,
    )  # fmt: skip
    assert missing.returncode != 0 and "set ALERT_WEBHOOK_URL" in missing.stderr


def test_grafana_provisioning_matches_the_dashboard_and_compose() -> None:
    source = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (ds,) = source["datasources"]
    assert ds["url"] == "http://prometheus:9090" and ds["type"] == "prometheus"
    provider = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "atb.yml").read_text()
    )
    path = provider["providers"][0]["options"]["path"]
    assert f"./grafana/dashboards:{path}:ro" in SERVICES["grafana"]["volumes"]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "atb.json").read_text())
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == ds["uid"], panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])


# -- Dockerfile and compose file -----------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_slim_non_root_wheel_with_livez_healthcheck() -> None:
    steps = dockerfile()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert froms and all(re.match(r"python:3\.\d+-slim\b", f) for f in froms)
    final = steps[max(i for i, (w, _) in enumerate(steps) if w == "FROM") :]
    runs = " ".join(rest for word, rest in final if word == "RUN")
    assert (
        "pip install" in runs
        and "atb-*.whl)[postgres]" in runs
        and "-c /tmp/constraints.txt" in runs
    )
    assert "-e " not in runs
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1] not in ("root", "0")
    (health,) = [rest for word, rest in final if word == "HEALTHCHECK"]
    assert "/livez" in health
    (cmd,) = [rest for word, rest in final if word == "CMD"]
    assert json.loads(cmd) == ["atb", "live-health", "--", "ml_basic", "--paper-trading"]
    for word, rest in steps:
        if word == "COPY" and "--from" not in rest:
            for src in shlex.split(rest)[:-1]:
                assert (ROOT / src).exists(), src


def test_compose_publishes_on_loopback_and_wires_the_token() -> None:
    assert {"atb", "postgres", "dashboard", "prometheus", "alertmanager", "grafana"} <= set(
        SERVICES
    )
    for name, svc in SERVICES.items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)
    assert SERVICES["atb"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert COMPOSE["secrets"]["atb_api_token"] == {"environment": "ATB_API_TOKEN"}
    assert "atb_api_token" in SERVICES["prometheus"]["secrets"]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [j for j in scrape["scrape_configs"] if j["job_name"] == "atb"]
    assert job["authorization"]["credentials_file"] == "/run/secrets/atb_api_token"
    assert job["static_configs"][0]["targets"] == ["atb:8000"]


def names_atb_reads() -> set[str]:
    """Environment variable names that appear in atb's code or config as something read."""
    found: set[str] = set()
    texts = [p.read_text() for p in (ROOT / "atb").rglob("*.py")]
    texts += [p.read_text() for p in (ROOT / "conf").rglob("*.yaml")]
    for text in texts:
        found |= set(re.findall(r"oc\.env:([A-Z][A-Z0-9_]*)", text))
        found |= set(re.findall(r"[\"']([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|PORT|HOST|ENV)[\"']", text))
    return found


def test_every_env_var_compose_sets_for_atb_is_one_atb_reads() -> None:
    known = names_atb_reads()
    for name in ATB_SERVICES:
        env = SERVICES[name]["environment"]
        unknown = sorted(set(env) - known)
        assert not unknown, f"{name} sets env vars atb never reads: {unknown}"
    script = (DEPLOY / "alertmanager" / "render-config.sh").read_text()
    for var in SERVICES["alertmanager"]["environment"]:
        assert f"${{{var}" in script
    assert {"LOG_JSON", "ATB_API_TOKEN", "ATB_DB_URL", "ATB_DASHBOARD_PASSWORD"} <= known


# -- every atb service's command, on this host ----------------------------------------------


def service_env(name: str, **overrides: str) -> dict[str, str]:
    """The service's environment as compose would set it from env.example, plus overrides."""
    values = {}
    for key, raw in SERVICES[name]["environment"].items():
        values[key] = re.sub(
            r"\$\{([A-Z_]+)(?::?[-?][^}]*)?\}", lambda m: TEST_ENV.get(m.group(1), ""), str(raw)
        )
    return clean_env(**{**values, **overrides})


def in_this_env(cmd: list[str]) -> list[str]:
    """`atb ...` with this interpreter's atb (the image has it on PATH)."""
    import sys

    assert cmd[0] == "atb"
    return [sys.executable, "-m", "atb.cli", *cmd[1:]]


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance(candles=synthetic_candles(3000), warmup=2500) as srv:
        yield srv


@pytest.mark.e2e
@pytest.mark.postgres
def test_atb_and_dashboard_services_run_on_the_host(
    tmp_path: Path, pg_url: str, fake: FakeBinance
) -> None:
    atb_port, dash_port = free_port(), free_port()
    token = TEST_ENV["ATB_API_TOKEN"]
    # compose's atb command verbatim; the test adds only where the exchange is.
    cmd = [*in_this_env(SERVICES["atb"]["command"]), f"exchange.base_url={fake.url}",
           "live.stale_after=1e12"]  # fmt: skip
    env = service_env(
        "atb", HOST="127.0.0.1", PORT=str(atb_port), ATB_DB_URL=pg_url,
        ATB_OUTPUT_DIR=str(tmp_path / "outputs"), ALERT_WEBHOOK_URL="",
        BINANCE_API_KEY=fake.api_key, BINANCE_API_SECRET=fake.api_secret,
    )  # fmt: skip
    assert env["ENV"] == "production" and env["ATB_API_TOKEN"] == token
    atb = Proc(cmd, env, tmp_path, tmp_path / "atb.log")
    dash = None
    try:
        atb.wait_until(lambda: http_get(atb_port, "/livez")[0] == 200, 180, "atb /livez")
        # The image's HEALTHCHECK, as Docker would run it inside the container.
        (health,) = [rest for word, rest in dockerfile() if word == "HEALTHCHECK"]
        probe = json.loads(health[health.index("CMD") + 3 :].strip())
        import sys

        assert probe[0] == "python"
        ran = subprocess.run(
            [sys.executable, *probe[1:]], env=env, capture_output=True, text=True, timeout=30
        )
        assert ran.returncode == 0, ran.stderr
        assert http_get(atb_port, "/metrics")[0] == 401
        assert http_get(atb_port, "/metrics", {"Authorization": f"Bearer {token}"})[0] == 200
        assert "host from env:HOST" in atb.output()

        dash_env = service_env(
            "dashboard", HOST="127.0.0.1", PORT=str(dash_port), ATB_DB_URL=pg_url
        )
        dash = Proc(
            in_this_env(SERVICES["dashboard"]["command"]), dash_env, tmp_path, tmp_path / "dash.log"
        )
        wait_port(dash_port, 180)
        code, head, _ = http_get(dash_port, "/monitoring")
        assert code == 302 and "login" in head["location"]
        cookie = dashboard_login(
            dash_port, TEST_ENV["ATB_DASHBOARD_USER"], TEST_ENV["ATB_DASHBOARD_PASSWORD"]
        )
        assert cookie is not None
        code, _, body = http_get(dash_port, "/monitoring", {"Cookie": cookie}, timeout=60)
        assert code == 200, body[:300]
    finally:
        if dash is not None:
            dash.stop()
        assert atb.stop() == 0, atb.output()[-3000:]
    for secret in (token, TEST_ENV["ATB_DASHBOARD_PASSWORD"], TEST_ENV["POSTGRES_PASSWORD"]):
        assert secret not in atb.output()
        assert dash is None or secret not in dash.output()
