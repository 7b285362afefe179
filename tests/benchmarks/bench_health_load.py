"""The trading loop with and without 200 keep-alive /health clients (issue 14).

Real paper session (runner, replay feed one new candle per poll, ml_basic, SQLite records,
journal, alerts, health server on 127.0.0.1 in its own process) at
`live.check_interval=0.05`. Three phases of PHASE seconds: no clients, 200 keep-alive
connections each polling /health about once a second (bench_health.py's client, in its
own process), no clients again. Baseline: the mean of the two quiet phases, same process,
same run. Reported: iterations/s in each phase and the loaded/quiet ratio (goal >= 0.95),
the loop's median iteration time, /health answers that were not 200 (a false 503), and
loop_stalled alerts (must be 0).

Run: `nox -s bench -- -k health_load`.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from atb_testkit.outage import InProcessSession, wait_for
from bench_health import CLIENT

PHASE = float(os.environ.get("ATB_BENCH_HEALTH_LOAD_SECONDS", "12"))
# The 200 clients stand for monitors on other machines: on these 2 shared cores they run at
# the lowest priority, so what is measured is the server's cost to the loop, not the
# client's own CPU. ATB_BENCH_HEALTH_CLIENT_NICE=0 runs them at normal priority.
CLIENT_NICE = int(os.environ.get("ATB_BENCH_HEALTH_CLIENT_NICE", "19"))
CLIENT_PREFIX = ["nice", "-n", str(CLIENT_NICE)] if CLIENT_NICE else []
CONNECTIONS = 200


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _phase(session: InProcessSession, seconds: float) -> tuple[float, float]:
    engine = session.engine
    i0, n0, t0 = engine.iterations, len(engine.stats), time.perf_counter()
    time.sleep(seconds)
    i1, t1 = engine.iterations, time.perf_counter()
    times = [e for e, _ in list(engine.stats)[n0:]]
    return (i1 - i0) / (t1 - t0), statistics.median(times) if times else float("nan")


def test_loop_rate_with_and_without_200_health_connections(tmp_path: Path) -> None:
    from atb.logging.hooks import add_record_listener

    stalled: list[str] = []
    remove = add_record_listener(
        lambda r: (
            stalled.append(str(r.get("name")))
            if "loop_stalled" in str(r.get("fields") or "") or r.get("name") == "loop_stalled"
            else None
        )
    )
    port = _free_port()
    session = InProcessSession(
        [
            "mode=paper",
            "exchange=replay",
            "exchange.step=true",
            "strategy=ml_basic",
            "live.check_interval=0.05",
            f"health.port={port}",
            f"db.url=sqlite:///{tmp_path / 'atb.db'}",
            "logging.sinks=[]",
            "runner.write_outputs=false",
        ],
        "paper",
        "ml_basic",
    )
    os.environ.pop("PORT", None)
    os.environ.pop("HEALTH_CHECK_PORT", None)
    try:
        session.start()
        wait_for(lambda: session.engine.iterations >= 40, 120, "warm-up")
        quiet1 = _phase(session, PHASE)
        out: dict[str, Any] = {}

        def load() -> None:
            proc = subprocess.run(
                [*CLIENT_PREFIX, sys.executable, "-c", CLIENT, str(port), str(CONNECTIONS), "1.0",
                 str(PHASE)],
                capture_output=True, text=True, timeout=PHASE + 120,
            )  # fmt: skip
            out.update(json.loads(proc.stdout.strip().splitlines()[-1]))

        client = threading.Thread(target=load)
        client.start()
        time.sleep(1.0)  # the client's first period: all 200 connections open
        loaded = _phase(session, PHASE - 0.5)
        client.join()
        quiet2 = _phase(session, PHASE)
        summary = session.stop()
    finally:
        remove()
    quiet_rate = (quiet1[0] + quiet2[0]) / 2
    ratio = loaded[0] / quiet_rate
    not_200 = [e for e in out.get("errors", []) if "HTTP/1.1" in e]
    lat = sorted(out.get("latencies", []))
    p99 = lat[int(0.99 * (len(lat) - 1))] * 1000 if lat else float("nan")
    print(
        f"\nloop iterations/s: quiet {quiet1[0]:.2f}, 200 keep-alive /health clients "
        f"{loaded[0]:.2f}, quiet again {quiet2[0]:.2f} -> ratio {ratio:.3f} (goal >= 0.95)"
        f"\nmedian iteration: {quiet1[1] * 1e3:.2f} / {loaded[1] * 1e3:.2f} / "
        f"{quiet2[1] * 1e3:.2f} ms; /health answers {len(lat)}, p99 {p99:.1f} ms, "
        f"not 200: {len(not_200)}, other client errors: {len(out.get('errors', [])) - len(not_200)}"
        f"; loop_stalled alerts: {len(stalled)}; iterations {summary['iterations']}"
        f"; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        f"; client niceness {CLIENT_NICE}; health server in its own process"
    )
    assert not not_200, not_200[:5]
    assert not stalled
