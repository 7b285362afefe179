"""Generated secrets through every boundary where text leaves atb or is stored (issue 14).

The logging sinks have their own property test (tests/logging/test_redaction.py); this one
drives the other boundaries with the same generated secrets, through the functions atb
itself calls there: DB text and JSON columns (the engine's hook), the `.hydra/` copies,
`multirun.yaml`, `--cfg` printing, /health and /status payloads, alert bodies, and
config-error lines. Registered secrets are the run's own values; unregistered tokens must
be caught by key name or pattern.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from atb_testkit.secrets import leaks, registered, unregistered
from hypothesis import HealthCheck, assume, given, settings
from omegaconf import OmegaConf

from atb.logging.redaction import Redactor, get_redactor, set_redactor

R = "[REDACTED]"


def _config(secret: str, token: str, token2: str) -> dict[str, Any]:
    """A run config with secrets where users put them."""
    return {
        "exchange": {"id": "binance", "api_key": token, "api_secret": secret, "password": None},
        "db": {"url": f"postgresql+psycopg://atb:{token2}@db.internal:5432/atb"},
        "alerts": {
            "channels": [
                {"url": f"https://hooks.slack.com/services/T0/B0/{token}"},
                {"url": f"https://api.telegram.org/bot{token2}/sendMessage"},
                {"headers": {"Authorization": f"Bearer {token}"}},
            ]
        },
        "notes": [f"connected with {secret}", f"retry url=https://u:{token}@proxy/x"],
    }


def _texts(tmp: Path, secret: str, token: str, token2: str) -> dict[str, str]:
    from atb.db.node import DatabaseConfig, build_engine
    from atb.runtime.outputs import write_outputs
    from atb.runtime.printed import redact_yaml_text
    from atb.runtime.sweep import _RedactingOmegaConf

    config = _config(secret, token, token2)
    overrides = [f"exchange.api_key={token}", f"db.url=postgresql://u:{token2}@h/x"]
    out: dict[str, str] = {}

    # DB: text columns through the engine hook, JSON columns through its serializer
    engine = build_engine(
        DatabaseConfig.model_validate(
            {"_target_": "atb.db.node.Database", "url": f"sqlite:///{tmp / 'b.db'}"}
        )
    )
    meta = sa.MetaData()
    table = sa.Table("t", meta, sa.Column("note", sa.Text), sa.Column("details", sa.JSON))
    meta.create_all(engine)
    note = f"binance -2015 Invalid API-key {secret} Authorization: Bearer {token} apiKey={token2}"
    with engine.begin() as conn:
        conn.execute(table.insert(), [{"note": note, "details": config}])
        conn.execute(table.insert().values(note=note, details={"req": overrides}))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("select note, details from t")).all()
    engine.dispose()
    out["db"] = "\n".join(f"{n}\n{d}" for n, d in rows)
    assert all(json.loads(d) for _, d in rows)  # JSON stays JSON

    # files a run writes: .hydra copies, multirun.yaml
    write_outputs(tmp / "run", config, overrides, {"overrides": {"task": overrides}}, frozenset())
    out["hydra"] = "\n".join(p.read_text() for p in (tmp / "run" / ".hydra").iterdir())
    cfg = OmegaConf.create({**config, "hydra": {"overrides": {"task": overrides}}})
    _RedactingOmegaConf.save(cfg, tmp / "multirun.yaml")
    out["multirun.yaml"] = (tmp / "multirun.yaml").read_text()
    assert yaml.safe_load(out["multirun.yaml"])["exchange"]["api_key"] == R

    # --cfg printing
    out["--cfg"] = redact_yaml_text(yaml.safe_dump(config, sort_keys=False))

    # HTTP payloads (/status, /health)
    from atb.health.server import redact_payload

    out["http"] = json.dumps(redact_payload({"config": config, "error": note}, frozenset()))

    # alert bodies (every channel redacts its text with the run's redactor)
    from atb.logging.redaction import redact_text

    out["alert"] = redact_text(f"order rejected: {note} ({overrides[1]})")

    # config-error lines
    from atb.config.validate import validate_config
    from atb.runtime.errors import ConfigError

    with pytest.raises(ConfigError) as info:
        validate_config({"symbol": f"x {secret}", "timeframe": f"bad {token}", **{
            "db": {"_target_": "atb.db.node.Database", "url": f"sqlite:///x?password={token2}",
                   "pool_size": f"{secret}"}}})  # fmt: skip
    out["config error"] = "\n".join(info.value.problems)
    return out


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(secret=registered, token=unregistered, token2=unregistered)
def test_no_generated_secret_crosses_any_boundary(
    tmp_path_factory: pytest.TempPathFactory, secret: str, token: str, token2: str
) -> None:
    assume(all(v not in R for v in (secret, token, token2)))
    assume(len({secret, token, token2}) == 3)
    previous = get_redactor()
    set_redactor(Redactor(secrets=[secret]))
    try:
        texts = _texts(tmp_path_factory.mktemp("b"), secret, token, token2)
    finally:
        set_redactor(previous)
    for where, text in texts.items():
        assert R in text, where
        for value in (secret, token, token2):
            assert not leaks(text, value), f"{value!r} crossed {where}:\n{text}"
