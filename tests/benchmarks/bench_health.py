"""Health server latency under load, against the original system's design.

Target (issue 7): `/health` p99 <= 10 ms with 200 concurrent connections while the engine
loop keeps a core busy. Baseline, same run, same load, same busy engine: a plain stdlib
`http.server.HTTPServer` serving the same payload from one thread, as the original did.

Load: a separate client process (so the load generator never competes for this process's
GIL) opens 200 connections to 127.0.0.1; each sends `GET /health` (HTTP/1.1 keep-alive) on
a jittered 1 s period (monitors polling every second), ~200 requests/s from 200 simultaneous
clients, like a fleet of monitors and probes. A response that closes the connection (the
stdlib server speaks HTTP/1.0) makes that client reconnect for its next request, and the
connect time counts in that request's latency. Latency = request sent -> full body read,
measured after a one-period warm-up (in which all 200 clients connect).

The busy engine keeps one core busy and beats `PROBES.heartbeat` every iteration, in three
variants (see `busy_engine`): `numpy` (engine-like array work in a thread of this process),
`process` (another process burns the core) and `python` (pure-interpreter work in a thread
of this process: the GIL worst case, reported but not held to the target).

Run: `nox -s bench -- -k health` (or `pytest tests/benchmarks/bench_health.py -s`).
"""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import pytest

from atb.health.server import HealthServer, HealthServerConfig
from atb.runtime.context import RunContext
from atb.runtime.probes import Probes

CONNECTIONS = int(os.environ.get("ATB_BENCH_HEALTH_CONNECTIONS", "200"))
PERIOD = float(os.environ.get("ATB_BENCH_HEALTH_PERIOD", "1.0"))
DURATION = float(os.environ.get("ATB_BENCH_HEALTH_SECONDS", "8"))
TARGET_P99_MS = 10.0

CLIENT = r"""
import asyncio, json, random, sys, time

HOST, PORT, CONNS, PERIOD, DURATION = "127.0.0.1", int(sys.argv[1]), int(sys.argv[2]), \
    float(sys.argv[3]), float(sys.argv[4])
REQUEST = b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: keep-alive\r\n\r\n"
latencies, errors, reconnects = [], [], [0]

async def read_response(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    if length:
        await reader.readexactly(length)
    else:  # HTTP/1.0 without a length: the body ends with the connection
        await reader.read()
        close = True
    if not head.startswith(b"HTTP/1.1 200") and not head.startswith(b"HTTP/1.0 200"):
        raise RuntimeError(head.split(b"\r\n")[0].decode())
    return close or head.startswith(b"HTTP/1.0")

async def client(stop_at, warm_until):
    reader = writer = None
    await asyncio.sleep(random.random() * PERIOD)  # spread the first wave over one period
    next_at = time.perf_counter()
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, PORT)
                reconnects[0] += 1
            writer.write(REQUEST)
            close = await asyncio.wait_for(read_response(reader), 10)
            if t0 >= warm_until:  # steady state: the first period opens 200 connections at once
                latencies.append(time.perf_counter() - t0)
            if close:
                writer.close()
                reader = writer = None
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:80])
            if writer is not None:
                writer.close()
            reader = writer = None
        next_at += PERIOD * random.uniform(0.8, 1.2)
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
    if writer is not None:
        writer.close()

async def main():
    now = time.perf_counter()
    await asyncio.gather(*(client(now + PERIOD + DURATION, now + PERIOD) for _ in range(CONNS)))

asyncio.run(main())
print(json.dumps({"latencies": latencies, "errors": errors, "connects": reconnects[0]}))
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def load(port: int) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, str(port), str(CONNECTIONS), str(PERIOD), str(DURATION)],
        capture_output=True, text=True, timeout=DURATION + 120, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    lat = result["latencies"]
    result["n"] = len(lat)
    result["p50_ms"] = percentile(lat, 50) * 1000
    result["p99_ms"] = percentile(lat, 99) * 1000
    result["max_ms"] = max(lat) * 1000 if lat else float("nan")
    result["rps"] = len(lat) / DURATION
    del result["latencies"]
    return result


BURN = "import time\nwhile True:\n    sum(i * i for i in range(10000))\n"


PROBES = Probes()  # the benchmark run's probes: the busy engine beats, the server reads


@contextmanager
def busy_engine(kind: str) -> Iterator[dict[str, int]]:
    """A trading loop that never sleeps and beats `PROBES.heartbeat` every iteration.

    - `python`: pure-interpreter work in a thread of this process: it wants the GIL all
      the time, the worst case for any same-process server.
    - `numpy`: an engine-like iteration (array maths, where the GIL is released, plus a
      little Python), in a thread of this process: what the ML engine's loop looks like.
    - `process`: the core is burned by another process, so only the CPU is contended.
    """
    stop = threading.Event()
    stats = {"iterations": 0}
    burner: subprocess.Popen[bytes] | None = None

    def loop() -> None:
        import numpy as np

        a = np.random.default_rng(0).random(200_000)
        PROBES.heartbeat.start(interval=1.0)  # max_silence 3 s
        while not stop.is_set():
            if kind == "python":
                acc = 0
                for i in range(2000):  # ~0.1 ms of interpreter work
                    acc += i * i % 7
            elif kind == "numpy":
                # Single-threaded ufuncs and a sort (no BLAS thread pool, which would burn
                # every core, not one); the GIL is released inside each call.
                b = np.sort(np.tanh(a))
                float(b[len(b) // 2])
            else:
                time.sleep(0.01)
            PROBES.heartbeat.beat()
            stats["iterations"] += 1

    if kind == "process":
        burner = subprocess.Popen([sys.executable, "-c", BURN])
    thread = threading.Thread(target=loop, name="bench-engine", daemon=True)
    thread.start()
    try:
        yield stats
    finally:
        stop.set()
        thread.join(5)
        if burner is not None:
            burner.kill()
            burner.wait(5)


@contextmanager
def atb_server() -> Iterator[HealthServer]:
    config = HealthServerConfig.model_validate(
        {
            "_target_": "atb.health.server.HealthServer",
            "port": 0,
            "checks": [{"_target_": "atb.health.checks.ConfigCheck"}],
        }
    )
    server = HealthServer(config, RunContext(mode="paper", strategy="ml_basic", probes=PROBES))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def stdlib_server(payload: bytes) -> Iterator[int]:
    """The original design: http.server, one thread, one request at a time, HTTP/1.0."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


def measure(kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    PROBES.reset()
    with busy_engine(kind) as engine, atb_server() as server:
        assert server.port is not None
        time.sleep(0.2)
        payload = json.dumps(server.health_payload()[1]).encode()
        results = []
        for port_cm in (nullcontext(server.port), stdlib_server(payload)):
            with port_cm as port:
                before = engine["iterations"]
                t0 = time.perf_counter()
                result = load(port)
                result["engine_rate"] = (engine["iterations"] - before) / (time.perf_counter() - t0)
                results.append(result)
    return results[0], results[1]


def report(kind: str, atb: dict[str, Any], base: dict[str, Any]) -> None:
    ratio = base["p99_ms"] / atb["p99_ms"] if atb["p99_ms"] else float("inf")
    lines = [
        f"\n[health] busy engine: {kind}; {CONNECTIONS} connections, one GET /health per "
        f"{PERIOD * 1000:.0f} ms each, {DURATION:g} s"
    ]
    for name, r in (("atb (tornado, own thread)", atb), ("stdlib http.server, 1 thread", base)):
        lines.append(
            f"  {name:29s} n={r['n']} ({r['rps']:.0f}/s) p50 {r['p50_ms']:.2f} ms  "
            f"p99 {r['p99_ms']:.2f} ms  max {r['max_ms']:.1f} ms  errors {len(r['errors'])}  "
            f"connects {r['connects']}  engine {r['engine_rate']:.0f} it/s"
        )
    lines.append(f"  p99 ratio stdlib/atb: {ratio:.1f}x (target: atb p99 <= {TARGET_P99_MS:g} ms)")
    print("\n".join(lines))


@pytest.mark.parametrize("kind", ["numpy", "process", "python"])
def test_health_p99_under_load_vs_stdlib(kind: str) -> None:
    atb, base = measure(kind)
    report(kind, atb, base)
    assert not atb["errors"], atb["errors"][:5]
    if kind == "python":
        return  # reported, not asserted: see the module docstring
    assert atb["p99_ms"] <= TARGET_P99_MS
