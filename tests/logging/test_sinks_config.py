from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from logging_helpers import composed_logging
from loguru import logger
from omegaconf import OmegaConf
from pydantic import ValidationError

from atb.config.base import format_validation_error
from atb.config.logging import LoggingConfig
from atb.config.redaction import RedactionConfig
from atb.logging.events import log_order_event
from atb.logging.node import LoggingNode
from atb.logging.redaction_node import RedactionNode
from atb.logging.setup import (
    configure_logging,
    effective_sinks,
    flush,
    read_env,
    resolve_json,
    sink_health,
)
from atb.runtime.context import RunContext
from atb.runtime.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "conf"


# -- env overrides -------------------------------------------------------------------------


def test_env_parsing() -> None:
    env = read_env(
        {
            "LOG_LEVEL": "debug",
            "LOG_JSON": "1",
            "LOG_CCXT_LEVEL": "ERROR",
            "LOG_MAX_MESSAGE_LEN": "100",
        }
    )
    assert (env.level, env.json, env.library_levels, env.max_message_len) == (
        "DEBUG",
        True,
        {"ccxt": "ERROR"},
        100,
    )
    assert read_env({"ENV": "production"}).json is None  # only LOG_JSON is an override
    assert resolve_json(None, None, environ={"ENV": "production"}) is True
    assert resolve_json(None, environ={"RAILWAY_ENVIRONMENT": "prod"}) is True
    prod = {"RAILWAY_ENVIRONMENT": "prod", "LOG_JSON": "0"}
    assert resolve_json(read_env(prod).json, None, environ=prod) is False
    assert resolve_json(None, False, environ={"ENV": "production"}) is False
    assert resolve_json(None, environ={}) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOG_LEVEL": "x"}, "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR (got 'x')"),
        ({"LOG_JSON": "maybe"}, "LOG_JSON: must be 1 or 0 (got 'maybe')"),
        (
            {"LOG_SQLALCHEMY_LEVEL": "loud"},
            "LOG_SQLALCHEMY_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR (got 'loud')",
        ),
        ({"LOG_MAX_MESSAGE_LEN": "ten"}, "LOG_MAX_MESSAGE_LEN: must be an integer >= 64"),
    ],
)
def test_env_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        configure_logging(env=env)
    assert message in str(info.value)
    assert info.value.exit_code == 2


def test_log_json_switches_stream_sinks() -> None:
    console = LoggingConfig()
    assert [type(s).__name__ for s in effective_sinks(console, True)] == ["JsonSinkConfig"]
    js = LoggingConfig.model_validate({"sinks": [{"kind": "json"}, {"kind": "file"}]})
    assert [type(s).__name__ for s in effective_sinks(js, False)] == [
        "ConsoleSinkConfig",
        "FileSinkConfig",
    ]


def _run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {
        k: v for k, v in os.environ.items() if not k.startswith(("LOG_", "RAILWAY_")) and k != "ENV"
    }
    full.update(env, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


ENTRY = """
    import sys
    from loguru import logger
    from atb.logging import configure_logging, log_order_event, set_context
    from atb.runtime.errors import ConfigError
    try:
        configure_logging()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        sys.exit(exc.exit_code)
    set_context(strategy="ml_basic", symbol="BTCUSDT", session_id=3)
    logger.debug("debug line")
    logger.info("hello password=hunter22")
    log_order_event("order_rejected", reason="min notional")
    import logging
    logging.getLogger("sqlalchemy.engine").info("SELECT 1")
    logging.getLogger("sqlalchemy.engine").warning("slow query")
"""  # no explicit flush: the atexit hook must write everything out


def test_subprocess_json_on_stdout() -> None:
    proc = _run(ENTRY, {"LOG_JSON": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["message"] for line in lines] == [
        "hello password=[REDACTED]",
        "order_rejected",
        "slow query",
    ]
    assert lines[1]["event_type"] == "order_event" and lines[1]["session_id"] == 3
    assert lines[2]["logger"] == "sqlalchemy.engine"


def test_subprocess_console_and_levels() -> None:
    proc = _run(ENTRY, {"LOG_LEVEL": "DEBUG", "LOG_SQLALCHEMY_LEVEL": "INFO"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    err = proc.stderr
    assert "debug line" in err and "SELECT 1" in err and "hunter22" not in err
    assert 'event_type=order_event reason="min notional"' in err
    assert "strategy=ml_basic symbol=BTCUSDT session_id=3" in err


@pytest.mark.slow  # two CLI subprocesses
def test_subprocess_production_env_and_invalid() -> None:
    proc = _run(ENTRY, {"ENV": "production"})
    assert json.loads(proc.stdout.splitlines()[0])["level"] == "INFO"
    proc = _run(ENTRY, {"LOG_LEVEL": "chatty"})
    assert proc.returncode == 2
    assert "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR (got 'chatty')" in proc.stderr


# -- sinks -----------------------------------------------------------------------------------


def test_file_rotation_and_retention(tmp_path: Path) -> None:
    configure_logging(
        {
            "sinks": [
                {
                    "kind": "file",
                    "path": str(tmp_path / "r.log"),
                    "rotation": "2 KB",
                    "retention": 2,
                }
            ],
            "background": False,
        },
        env={},
    )
    for i in range(100):
        logger.info("line {} {}", i, "x" * 50)
    flush()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["r.log", "r.log.1", "r.log.2"]
    assert all(p.stat().st_size <= 2048 for p in tmp_path.iterdir())
    last = json.loads((tmp_path / "r.log").read_text().splitlines()[-1])
    assert last["message"].startswith("line 99")


def test_background_writer_flushes(tmp_path: Path) -> None:
    configure_logging(
        {"sinks": [{"kind": "file", "path": str(tmp_path / "b.log")}], "flush_interval": 0.05},
        env={},
    )
    for i in range(1000):
        log_order_event("order_filled", n=i)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if len((tmp_path / "b.log").read_text().splitlines()) == 1000:
            break
        time.sleep(0.02)
    assert len((tmp_path / "b.log").read_text().splitlines()) == 1000


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_failing_sink_reported_once_others_continue(tmp_path: Path) -> None:
    configure_logging(
        {
            "sinks": [
                {"kind": "file", "path": "/dev/full", "name": "full"},
                {"kind": "file", "path": str(tmp_path / "ok.log")},
            ],
            "background": False,
        },
        env={},
    )
    for i in range(20):
        log_order_event("order_filled", n=i)
    flush()
    lines = [json.loads(x) for x in (tmp_path / "ok.log").read_text().splitlines()]
    assert sum(1 for x in lines if x.get("event") == "order_filled") == 20
    failures = [x for x in lines if "log sink 'full' failed" in x["message"]]
    assert len(failures) == 1 and failures[0]["level"] == "ERROR"
    health = {h["name"]: h for h in sink_health()}
    assert health["full"]["ok"] is False and health["FileSink"]["ok"] is True


class _BrokenPipe(io.StringIO):
    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_closed_pipe_does_not_stop_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", _BrokenPipe())
    configure_logging(
        {
            "sinks": [{"kind": "json"}, {"kind": "file", "path": str(tmp_path / "ok.log")}],
            "background": False,
        },
        env={},
    )
    for _ in range(5):
        logger.info("still trading")
    flush()
    text = (tmp_path / "ok.log").read_text()
    assert text.count("still trading") == 5
    # Reported once as a console line, and at most once as the journalled event the
    # log_sink_failed alert rule listens for.
    assert text.count("log sink 'JsonSink' failed") == 1
    assert text.count('"event":"log_sink_failed"') <= 1


def test_rate_limit_storm_and_never_limited_events(outputs: Any) -> None:
    outputs.configure(rate_limit={"window_seconds": 60, "burst": 3})
    with outputs.capture():
        for _ in range(50):
            logger.error("websocket keepalive failed")
        for _ in range(50):
            log_order_event("order_rejected", reason="same")
        from atb.logging import core

        core.flush_rate_limits(force=True)
    lines = outputs.json_lines()
    plain = [x for x in lines if x["message"] == "websocket keepalive failed"]
    summary = [x for x in lines if "rate-limited" in x["message"]]
    assert len(plain) == 3 and len(summary) == 1 and summary[0]["suppressed"] == 47
    assert sum(1 for x in lines if x.get("event") == "order_rejected") == 50


def test_truncation(outputs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    configure_logging(outputs.config(), env={"LOG_MAX_MESSAGE_LEN": "100"})
    with outputs.capture():
        logger.info("y" * 500)
    line = outputs.json_lines()[0]
    assert line["message"].startswith("y" * 100) and "truncated 400 chars" in line["message"]


def _stdlib_caller() -> None:
    logging.getLogger("ccxt.binance").warning("rate limit %d", 3)


def test_stdlib_interception_attribution(outputs: Any) -> None:
    outputs.configure()
    with outputs.capture():
        _stdlib_caller()
        logging.getLogger("urllib3.connectionpool").info("filtered by library level")
    (line,) = outputs.json_lines()
    assert line["logger"] == "ccxt.binance" and line["function"] == "_stdlib_caller"
    assert line["message"] == "rate limit 3" and line["level"] == "WARNING"


def test_exception_structured(outputs: Any) -> None:
    outputs.configure()
    with outputs.capture():
        try:
            raise KeyError("missing")
        except KeyError:
            logger.exception("failed")
    exc = outputs.json_lines()[0]["exception"]
    assert exc["type"] == "KeyError" and "missing" in exc["message"]
    assert "Traceback" in exc["traceback"]


def test_idempotent(outputs: Any) -> None:
    outputs.configure()
    configure_logging(env={})  # no config: keeps the configured sinks
    configure_logging(env={})
    with outputs.capture():
        logger.info("once")
    assert outputs.texts()["json"].count("once") == 1


# -- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["console", "json", "production"])
def test_logging_presets_validate(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("LOG_LEVEL", "LOG_JSON", "LOG_MAX_MESSAGE_LEN", "LOG_CCXT_LEVEL"):
        monkeypatch.delenv(var, raising=False)
    raw = OmegaConf.to_container(composed_logging(f"logging={name}"), resolve=True)
    cfg = LoggingConfig.model_validate(raw)
    assert cfg.target == "atb.logging.node.LoggingNode" and cfg.needs == ["redaction"]
    assert cfg.model_dump(by_alias=True, exclude={"sinks"}) == LoggingConfig().model_dump(
        by_alias=True, exclude={"sinks"}
    ) | {"flush_interval": cfg.flush_interval}


def test_redaction_default_validates() -> None:
    raw = OmegaConf.to_container(OmegaConf.load(CONF / "redaction" / "default.yaml"))
    assert RedactionConfig.model_validate(raw) == RedactionConfig()


@pytest.mark.parametrize(
    ("sinks", "expected"),
    [
        ([{"kind": "console", "colour": True}], "logging.sinks.0.colour: unknown key"),
        ([{"kind": "nope"}], "logging.sinks.0.kind: must be one of console, json, file"),
        ([{"_target_": "atb.nothing.Sink"}], "logging.sinks.0._target_: cannot import"),
        ([{"kind": "file", "rotation": "lots"}], "logging.sinks.0.rotation"),
        ([{"kind": "json", "level": "LOUD"}], "logging.sinks.0.level"),
    ],
)
def test_sink_errors_name_the_key(sinks: list[dict[str, Any]], expected: str) -> None:
    with pytest.raises(ValidationError) as info:
        LoggingConfig.model_validate({"sinks": sinks})
    assert expected in "\n".join(format_validation_error(info.value, prefix="logging"))


def test_nodes(tmp_path: Path) -> None:
    ctx = RunContext(mode="paper", strategy=None, secrets=frozenset({"cfg-secret-123"}))
    redaction = RedactionNode(RedactionConfig(), ctx)
    cfg = LoggingConfig.model_validate(
        {"sinks": [{"kind": "file", "path": str(tmp_path / "{mode}-{run_id}.log")}]}
    )
    node = LoggingNode(cfg, ctx, redaction=redaction)
    node.start()
    logger.info("using cfg-secret-123")
    node.stop()
    (path,) = tmp_path.iterdir()
    assert path.name == f"paper-{ctx.run_id}.log"
    line = json.loads(path.read_text())
    assert line["message"] == "using [REDACTED]"
    assert line["run_id"] == ctx.run_id and line["mode"] == "paper" and "strategy" not in line
    logger.info("after stop")  # sinks keep working inline after the node stopped
    assert "after stop" in path.read_text()
