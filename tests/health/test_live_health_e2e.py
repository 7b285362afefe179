"""`PORT=... atb live-health -- ml_basic --paper-trading` end to end, in a subprocess.

These need the paper/live engine (`atb.engine.live_cli` plus `conf/mode/paper.yaml`); until
it lands they skip with "paper/live engine not available".
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from atb_testkit.waiting import wait_for_process
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]


def _engine_available() -> bool:
    return find_spec("atb.engine.live_cli") is not None and (ROOT / "conf/mode/paper.yaml").exists()


pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not _engine_available(), reason="paper/live engine not available"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(port: int, path: str, timeout: float = 10) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def get_json(port: int, path: str) -> tuple[int, dict[str, Any]]:
    code, body = get(port, path)
    return code, json.loads(body)


class LiveHealth:
    def __init__(self, proc: subprocess.Popen[str], port: int, log: Path) -> None:
        self.proc, self.port, self.log = proc, port, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def wait_until(self, predicate: Any, timeout: float = 60, what: str = "") -> Any:
        return wait_for_process(self.proc, predicate, timeout, what, self.output)

    def beating(self, timeout: float = 90) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            code, body = get_json(self.port, "/health")
            return body if code == 200 and body["loop"]["iterations"] >= 1 else None

        return self.wait_until(check, timeout, "the loop's first beats")  # type: ignore[no-any-return]

    def component(self, name: str) -> dict[str, Any]:
        return get_json(self.port, "/status")[1]["components"][name]  # type: ignore[no-any-return]


def spawn(
    tmp_path: Path,
    *args: str,
    port: int,
    env: dict[str, str] | None = None,
    db_url: str | None = None,
) -> LiveHealth:
    log = tmp_path / f"atb-{port}.log"
    sqlite_url = f"sqlite:///{tmp_path / 'atb.db'}"
    full_env = {
        **os.environ,
        "PORT": str(port),
        "ATB_OUTPUT_DIR": str(tmp_path / "outputs"),
        **(env or {}),
    }
    cmd = [
        sys.executable, "-m", "atb.cli", "live-health", "--", "ml_basic", "--paper-trading",
        "--check-interval", "0.5", f"db.url={db_url or sqlite_url}", *args,
    ]  # fmt: skip
    with log.open("w") as fh:
        proc = subprocess.Popen(
            cmd, stdout=fh, stderr=subprocess.STDOUT, text=True, env=full_env, cwd=tmp_path
        )
    return LiveHealth(proc, port, log)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[list[LiveHealth]]:
    started: list[LiveHealth] = []
    yield started
    for run in started:
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGTERM)
            try:
                run.proc.wait(30)
            except subprocess.TimeoutExpired:
                run.proc.kill()
                run.proc.wait(10)


def test_replay_every_endpoint(tmp_path: Path, live: list[LiveHealth]) -> None:
    run = spawn(tmp_path, "exchange=replay", port=free_port())
    live.append(run)
    health = run.beating()
    assert health["status"] == "healthy" and health["loop"]["state"] == "running"

    code, status = get_json(run.port, "/status")
    assert code == 200, status
    assert status["status"] in ("healthy", "degraded")
    components = status["components"]
    assert set(components) >= {"config", "database", "exchange", "journal", "data", "alerts"}
    assert "command-line overrides" in components["config"]["contributors"]
    assert "health=on" in components["config"]["providers"]["command_line"]
    assert "PORT" in components["config"]["providers"]["env_vars"]
    assert components["database"]["status"] == "healthy"
    assert components["exchange"]["status"] == "skipped"  # replay: nothing to reach
    assert get(run.port, "/livez")[0] == 200
    assert get(run.port, "/readyz")[0] == 200
    assert get(run.port, "/nope")[0] == 404

    code, body = get(run.port, "/metrics")
    assert code == 200
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    iterations = [
        s for s in families["atb_loop_iterations"].samples
        if s.labels.get("mode") == "paper" and s.labels.get("strategy") == "ml_basic"
    ]  # fmt: skip
    assert iterations and iterations[0].value >= 1

    run.proc.send_signal(signal.SIGTERM)
    assert run.proc.wait(30) == 0, run.output()


def test_test_exchange_reachable_then_faulty(tmp_path: Path, live: list[LiveHealth]) -> None:
    from atb_testkit.fake_binance import FakeBinance

    with FakeBinance() as fake:
        run = spawn(
            tmp_path, "exchange=binance", f"exchange.base_url={fake.url}",
            "health.checks.2.ttl=0", port=free_port(),
        )  # fmt: skip
        live.append(run)
        run.beating()
        exchange = run.component("exchange")
        assert exchange["status"] == "healthy" and exchange["reachable"] is True

        fake.faults.go_offline()
        exchange = run.wait_until(
            lambda: (c := run.component("exchange"))["reachable"] is False and c, 30, "unreachable"
        )
        assert exchange["status"] == "unhealthy"
        assert get(run.port, "/status")[0] == 503
        assert run.proc.poll() is None  # still running

        fake.faults.go_online()
        run.wait_until(lambda: run.component("exchange")["status"] == "healthy", 30, "recovery")


def test_seed_command_offline_reports_exchange_unreachable(
    tmp_path: Path, live: list[LiveHealth]
) -> None:
    # No network: every HTTP(S) request goes through a proxy that does not exist.
    dead = f"http://127.0.0.1:{free_port()}"
    env = {"HTTPS_PROXY": dead, "HTTP_PROXY": dead, "https_proxy": dead, "http_proxy": dead}
    # The seed command plus fast-failing exchange settings (no retries) to keep this quick.
    run = spawn(
        tmp_path, "exchange.retry.attempts=0", "exchange.timeout=2", port=free_port(), env=env
    )
    live.append(run)
    run.wait_until(lambda: get(run.port, "/health")[0] in (200, 503), 60, "the health server")
    exchange = run.wait_until(
        lambda: (c := run.component("exchange"))["status"] != "skipped" and c, 60, "exchange check"
    )
    assert exchange["reachable"] is False
    assert exchange["status"] == "unhealthy"
    assert exchange["error"]
    time.sleep(2)
    assert run.proc.poll() is None, run.output()  # reported, not crashed


def test_port_clash_fails_clearly(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        port = sock.getsockname()[1]
        run = spawn(tmp_path, "exchange=replay", port=port)
        try:
            code = run.proc.wait(60)
        finally:
            if run.proc.poll() is None:
                run.proc.kill()
        assert code != 0
        assert f"port {port}" in run.output() and "already in use" in run.output()


@pytest.mark.postgres
def test_database_stopped_and_restarted(tmp_path: Path, live: list[LiveHealth]) -> None:
    pgtemp = pytest.importorskip("atb_testkit.pgtemp")
    if pgtemp.find_pg_bin() is None:
        pytest.skip("PostgreSQL binaries not found")
    with pgtemp.TempPostgres() as pg:
        url = pg.create_database()
        run = spawn(
            tmp_path, "exchange=replay", "health.checks.1.ttl=0.5", "health.checks.1.timeout=2",
            port=free_port(), db_url=url,
        )  # fmt: skip
        live.append(run)
        run.beating()
        assert run.component("database")["status"] == "healthy"
        pg.stop("immediate")
        t0 = time.monotonic()
        db = run.wait_until(
            lambda: (c := run.component("database"))["status"] != "healthy" and c, 10, "db down"
        )
        assert time.monotonic() - t0 < 5
        assert db["status"] in ("degraded", "unhealthy") and db["connected"] is False
        pg.start()
        run.wait_until(lambda: run.component("database")["status"] == "healthy", 20, "db back")
        assert run.proc.poll() is None
