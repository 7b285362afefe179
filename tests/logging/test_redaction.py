from __future__ import annotations

import json
import logging

import pytest
from atb_testkit.secrets import leaks, registered, unregistered
from hypothesis import HealthCheck, assume, given, settings
from loguru import logger

from atb.config.redaction import DEFAULT_KEYS, DEFAULT_SECRET_ENV, RedactionConfig
from atb.logging.context import use_context
from atb.logging.events import log_data_event, log_engine_event, log_order_event
from atb.logging.hooks import add_record_listener
from atb.logging.redaction import (
    BUILTIN_KEYS,
    BUILTIN_SECRET_ENV,
    Redactor,
    get_redactor,
)
from atb.logging.redaction_node import RedactionNode
from atb.runtime.context import RunContext

R = "[REDACTED]"


def test_builtin_rules_match_config_defaults() -> None:
    assert tuple(DEFAULT_KEYS) == BUILTIN_KEYS
    assert tuple(DEFAULT_SECRET_ENV) == BUILTIN_SECRET_ENV


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("api_key=abc123 next", f"api_key={R} next"),
        ('{"apiKey": "zzz", "a": 1}', f'{{"apiKey": "{R}", "a": 1}}'),
        ("{'password': 'p w'}", f"{{'password': '{R}'}}"),
        ("Authorization: Bearer abcdefghijkl", f"Authorization: {R}"),
        ("sent Bearer abcdefghijkl upstream", f"sent Bearer {R} upstream"),
        ("postgresql://user:pw@host/db", f"postgresql://user:{R}@host/db"),
        (
            "GET /o?symbol=BTC&signature=beef&apiKey=xyz HTTP",
            f"GET /o?symbol=BTC&signature={R}&apiKey={R} HTTP",
        ),
        ("X-MBX-APIKEY: kkkk", f"X-MBX-APIKEY: {R}"),
        ("binance_api_secret = s3", f"binance_api_secret = {R}"),
    ],
)
def test_patterns(text: str, expected: str) -> None:
    assert Redactor().redact_text(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "session_id=42",
        "Passed: 10",
        "tokens=5 max_tokens: 100",
        "key=value",
        "symbol=BTCUSDT",
        "https://api.binance.com/api/v3/klines?symbol=BTCUSDT",
        "pass rate: 0.9",
        "ok",
    ],
)
def test_ordinary_text_untouched(text: str) -> None:
    assert Redactor(secrets=["hunter2hunter2"]).redact_text(text) == text


def test_by_value_and_escaped_spellings() -> None:
    red = Redactor(secrets=["pa'ss/w@rd\\x"])
    for form in [
        "pa'ss/w@rd\\x",
        "pa%27ss%2Fw%40rd%5Cx",
        repr("pa'ss/w@rd\\x")[1:-1],
        json.dumps("pa'ss/w@rd\\x")[1:-1],
    ]:
        assert red.redact_text(f"a {form} b") == f"a {R} b"
    red.add_secrets(["second-secret"])
    assert red.redact_text("x second-secret") == f"x {R}"
    assert Redactor(secrets=["abc"]).redact_text("abc") == "abc"  # below min length


def test_structured() -> None:
    red = Redactor(secrets=["hunter2pass"])
    data = {
        "headers": {"X-MBX-APIKEY": "k", "Content-Type": "json"},
        "items": ["hunter2pass", {"secret": 1}, ("t", "binance_api_key=q")],
        "db_password": "pw",
        "password_hint": None,
        "count": 3,
    }
    assert red.redact(data) == {
        "headers": {"X-MBX-APIKEY": R, "Content-Type": "json"},
        "items": [R, {"secret": R}, ["t", f"binance_api_key={R}"]],
        "db_password": R,
        "password_hint": None,
        "count": 3,
    }


def test_user_rules_from_config() -> None:
    cfg = RedactionConfig.model_validate(
        {
            "extra_keys": ["x_session"],
            "patterns": [{"name": "acct", "regex": r"acct-(\d{6})", "group": 1}],
        }
    )
    node = RedactionNode(cfg, RunContext(secrets=frozenset({"db-pass-123"})))
    red = get_redactor()
    assert red is node.redactor
    assert red.redact({"x_session": "abc"}) == {"x_session": R}
    assert red.redact_text("acct-123456 db-pass-123") == f"acct-{R} {R}"


def test_env_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_API_SECRET", "env-secret-value")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:db%40pw99@h/db")
    red = RedactionNode(RedactionConfig(), RunContext()).redactor
    assert red.redact_text("env-secret-value / db@pw99") == f"{R} / {R}"


def test_invalid_pattern_rejected() -> None:
    with pytest.raises(ValueError, match="regular expression"):
        RedactionConfig.model_validate({"patterns": [{"name": "x", "regex": "("}]})


# -- hypothesis: generated secrets in every position, through every sink, zero leaks ----


def _raise_with_local(secret: str) -> None:
    api_secret = secret  # a local: loguru's diagnose would print it
    raise ValueError(f"exchange rejected credentials {api_secret}")


def _emit_everywhere(secret: str, token: str, token2: str) -> None:
    logger.info("connecting with {} now", secret)
    logger.info(f"api_key={token} apiKey: {token2}")
    logger.info(json.dumps({"apiKey": token, "secret": secret}))
    logger.info(str({"password": secret, "other": 1}))
    logger.info(f"db postgresql://atb:{token}@db.internal:5432/atb")
    logger.info(f"Authorization: Bearer {token}")
    logger.info(f"GET /api/v3/order?symbol=BTCUSDT&timestamp=1&signature={token}&apiKey={token2}")
    logger.bind(token=token, note=f"see {secret}").warning("bound extras")
    log_order_event(
        "order_rejected", symbol="BTCUSDT", reason=f"invalid key {secret}", api_key=token
    )
    log_data_event(
        "fetch",
        request={
            "headers": {"X-MBX-APIKEY": token},
            "params": [{"passphrase": token2}, f"v {secret}"],
        },
    )
    with use_context(session_id=7, note=secret):
        log_engine_event("heartbeat", step=1)
    try:
        _raise_with_local(secret)
    except ValueError:
        logger.exception("order failed for {}", secret)
    try:
        _raise_with_local(secret)
    except ValueError as exc:
        log_order_event("order_failed", level="ERROR", exc_info=exc)
    logging.getLogger("ccxt.base.exchange").warning("retrying with secret %s", secret)
    logging.getLogger("urllib3").error("GET https://x/?signature=%s", token)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(secret=registered, token=unregistered, token2=unregistered)
def test_no_leak_through_any_sink(outputs, secret: str, token: str, token2: str) -> None:  # type: ignore[no-untyped-def]
    assume(secret not in R and token not in R and token2 not in R)
    outputs.reset()
    outputs.configure(redactor=Redactor(secrets=[secret]))
    remove = add_record_listener(outputs.records.append)
    try:
        with outputs.capture():
            _emit_everywhere(secret, token, token2)
    finally:
        remove()
    texts = outputs.texts()
    for sink, text in texts.items():
        for value in (secret, token, token2):
            assert not leaks(text, value), f"{value!r} leaked through {sink}:\n{text}"
    lines = outputs.json_lines()  # every line is valid JSON, same in stdout and file
    assert len(lines) == 15
    assert any(line.get("event") == "order_rejected" for line in lines)
    assert len(outputs.records) >= 6  # events + warnings reached the journal hook


def test_ordinary_text_survives_every_sink(outputs) -> None:  # type: ignore[no-untyped-def]
    outputs.configure(redactor=Redactor(secrets=["s3cr3t-value"]))
    with outputs.capture():
        logger.info("session_id=42 Passed: 10 tokens=5")
        log_engine_event("heartbeat", note="session_id=42")
    for text in outputs.texts().values():
        if text != "[]":
            assert "session_id=42 Passed: 10 tokens=5" in text


def test_get_redactor_default_is_builtin() -> None:
    red = get_redactor()
    assert red.redact_text("password=x1") == f"password={R}"


def test_text_values_of_rows_are_redacted_and_nothing_else_changes() -> None:
    """Record-log rows: every string (numpy's too) redacted, keys and numbers untouched."""
    import numpy as np

    red = Redactor(secrets={"S3cretValue9"})
    row = {"session_key": "paper:BTCUSDT", "note": np.str_("key S3cretValue9"), "qty": 1.5,
           "legs": ("S3cretValue9", 2), "nested": {"error": "Bearer S3cretValue9"}}  # fmt: skip
    out = red.redact_text_values(row)
    assert out["session_key"] == "paper:BTCUSDT" and out["qty"] == 1.5
    assert out["note"] == "key [REDACTED]" and out["legs"] == ["[REDACTED]", 2]
    assert "S3cretValue9" not in str(out)
