"""Where servers listen and who may read them: HOST/PORT, platform detection, the API token
and the dashboard login, tried as an operator would (real commands, real HTTP)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from atb_testkit.login import dashboard_login
from deploy_helpers import Proc, atb_cmd, clean_env, free_port, http_get, wait_port

from atb.dashboards.bind import NODE_PORT_ENV, STANDALONE_PORT_ENV, resolve_bind
from atb.runtime.exposure import (
    ExposureError,
    check_exposure,
    is_loopback,
    platform_marker,
    resolve_host,
)

TOKEN = "tok-3f9c1d7e5b2a4c60"
PASSWORD = "dash-pw-8e41b7c2d9"
PROBES = ("/health", "/livez", "/readyz")
PROTECTED = ("/status", "/metrics", "/")


@pytest.mark.parametrize(
    ("env", "host", "source"),
    [
        ({}, "127.0.0.1", "default (workstation)"),
        ({"ENV": "production"}, "0.0.0.0", "platform:ENV=production"),
        ({"ENV": "development"}, "127.0.0.1", "default (workstation)"),
        ({"RAILWAY_ENVIRONMENT": "production"}, "0.0.0.0", "platform:RAILWAY_ENVIRONMENT"),
        ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "0.0.0.0", "platform:KUBERNETES_SERVICE_HOST"),
        ({"HOST": "127.0.0.2", "ENV": "production"}, "127.0.0.2", "env:HOST"),
    ],
)
def test_host_follows_host_env_then_platform(env: dict[str, str], host: str, source: str) -> None:
    assert resolve_host("auto", env) == (host, source)


def test_explicit_host_wins_over_environment() -> None:
    assert resolve_host("10.1.2.3", {"HOST": "0.0.0.0", "ENV": "production"}) == (
        "10.1.2.3",
        "config",
    )
    assert platform_marker({}) is None


def test_dashboard_ports_standalone_takes_port_node_does_not() -> None:
    env = {"PORT": "8093", "ATB_DASHBOARD_PORT": "8094"}
    standalone = resolve_bind("auto", 5006, STANDALONE_PORT_ENV, "dashboards.port", env)
    node = resolve_bind("auto", 5006, NODE_PORT_ENV, "dashboards.port", env)
    assert (standalone.port, standalone.port_source) == (8093, "env:PORT")
    assert (node.port, node.port_source) == (8094, "env:ATB_DASHBOARD_PORT")
    assert resolve_bind("auto", 5006, NODE_PORT_ENV, "dashboards.port", {}).port == 5006


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.5.0.1"])
def test_loopback_needs_no_credentials(host: str) -> None:
    assert is_loopback(host)
    check_exposure("x", host, False, False, "how", "override")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.org"])
def test_beyond_loopback_needs_credentials_or_explicit_opt_out(host: str) -> None:
    with pytest.raises(ExposureError, match=f"refusing to listen on {host} without auth"):
        check_exposure("health server", host, False, False, "set X", "set y=true")
    check_exposure("health server", host, True, False, "set X", "set y=true")
    check_exposure("health server", host, False, True, "set X", "set y=true")


def _live_health(tmp_path: Path) -> list[str]:
    return [
        *atb_cmd("live-health", "--", "ml_basic", "--paper-trading"),
        "exchange=replay",
        "live.check_interval=0.2",
        f"db.url=sqlite:///{tmp_path / 'atb.db'}",
    ]


@pytest.mark.e2e
def test_platform_without_token_refuses_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(RAILWAY_ENVIRONMENT="production", PORT=str(port), ATB_OUTPUT_DIR=str(tmp_path))
    proc = subprocess.run(
        _live_health(tmp_path), env=env, cwd=tmp_path, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("atb: error")]
    assert len(errors) == 1, proc.stderr
    assert "refusing to listen on 0.0.0.0 without authentication: set ATB_API_TOKEN" in errors[0]
    assert "health.allow_unauthenticated=true" in errors[0]
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.e2e
def test_token_guards_everything_but_the_probes(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(
        ENV="production", HOST="127.0.0.1", PORT=str(port), ATB_API_TOKEN=TOKEN,
        ATB_OUTPUT_DIR=str(tmp_path), LOG_LEVEL="DEBUG",
    )  # fmt: skip
    proc = Proc(_live_health(tmp_path), env, tmp_path, tmp_path / "atb.log")
    try:
        # /readyz passes only once the loop trades (README "Loop states and endpoints").
        proc.wait_until(lambda: all(http_get(port, p)[0] == 200 for p in PROBES), 90, "probes 200")
        for path in PROBES:
            assert http_get(port, path)[0] == 200, path
            assert http_get(port, path, {"Authorization": "Bearer wrong"})[0] == 200, path
        for path in PROTECTED:
            for headers in (
                {},
                {"Authorization": "Bearer wrong"},
                {"Authorization": f"Basic {TOKEN}"},
                {"Authorization": f"Bearer {TOKEN}x"},
            ):
                code, head, body = http_get(port, path, headers)
                assert code == 401, (path, headers, code)
                assert head["www-authenticate"] == 'Bearer realm="atb"'
                assert b"unauthorized" in body and TOKEN.encode() not in body
            code, _, body = http_get(port, path, {"Authorization": f"Bearer {TOKEN}"})
            assert code == 200, (path, body[:300])
            assert TOKEN.encode() not in body
        # The environment is in /status (command line, config sources): never the token.
        status = http_get(port, "/status", {"Authorization": f"Bearer {TOKEN}"})[2]
        assert b"ATB_API_TOKEN" not in status or TOKEN.encode() not in status
    finally:
        proc.stop()
    out = proc.output()
    assert "host from env:HOST, port from env:PORT" in out
    assert "/status /metrics need the bearer token" in out
    assert TOKEN not in out
    for written in tmp_path.rglob("*"):
        if written.is_file() and written.suffix in (".yaml", ".log", ".json", ".txt"):
            assert TOKEN not in written.read_text(errors="replace"), written


@pytest.mark.e2e
def test_dashboard_refuses_platform_exposure_withoutdashboard_login(tmp_path: Path) -> None:
    env = clean_env(ENV="production", PORT=str(free_port()))
    proc = subprocess.run(
        atb_cmd("dashboards", "run", "monitoring"), env=env, cwd=tmp_path, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "atb dashboards: refusing to listen on 0.0.0.0 without authentication: set "
        "ATB_DASHBOARD_PASSWORD (and ATB_DASHBOARD_USER) for the dashboard login, "
        "or pass --allow-unauthenticated to serve it unauthenticated"
    ]


@pytest.mark.e2e
def test_dashboard_login_from_env_and_port_from_port(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(
        ENV="production", HOST="127.0.0.1", PORT=str(port), ATB_DASHBOARD_PASSWORD=PASSWORD,
        ATB_DASHBOARD_USER="ops", LOG_LEVEL="DEBUG",
    )  # fmt: skip
    proc = Proc(atb_cmd("dashboards", "run", "monitoring"), env, tmp_path, tmp_path / "d.log")
    try:
        wait_port(port, 120)
        code, head, _ = http_get(port, "/monitoring")
        assert code == 302 and "login?next=" in head["location"]
        assert dashboard_login(port, "ops", "wrong") is None
        assert dashboard_login(port, "atb", PASSWORD) is None
        cookie = dashboard_login(port, "ops", PASSWORD)
        assert cookie is not None
        code, _, body = http_get(port, "/monitoring", {"Cookie": cookie})
        assert code == 200 and b"bokeh" in body.lower()
        assert PASSWORD.encode() not in body
    finally:
        proc.stop()
    out = proc.output()
    assert f"on 127.0.0.1:{port} (host from env:HOST, port from env:PORT; login required)" in out
    assert PASSWORD not in out


@pytest.mark.e2e
def test_dashboards_node_refuses_platform_exposure_withoutdashboard_login(tmp_path: Path) -> None:
    env = clean_env(KUBERNETES_SERVICE_HOST="10.0.0.1", ATB_API_TOKEN=TOKEN,
                    ATB_OUTPUT_DIR=str(tmp_path))  # fmt: skip
    proc = subprocess.run(
        [*atb_cmd("run"), "mode=paper", "exchange=replay", "dashboards=monitoring",
         "health.port=0", "live.max_iterations=2", f"db.url=sqlite:///{tmp_path / 'atb.db'}"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("atb: error")]
    assert len(errors) == 1, proc.stderr
    assert "dashboards: refusing to listen on 0.0.0.0 without authentication" in errors[0]
    assert "set dashboards.allow_unauthenticated=true" in errors[0]
    assert "Traceback" not in proc.stderr and TOKEN not in proc.stderr + proc.stdout
