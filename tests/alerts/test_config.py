"""The `alerts` config group: composes, validates, and reports mistakes by dotted key."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from pydantic import ValidationError

from atb.__main__ import CONFIG_DIR
from atb.alerts.channels import WebhookChannelConfig
from atb.alerts.config import AlertsConfig
from atb.alerts.rules import (
    EventCountRuleConfig,
    HeartbeatSilenceRuleConfig,
    JournalSpillRuleConfig,
)
from atb.config.base import format_validation_error
from atb.config.validate import collect_secrets, to_container, validate_config


def composed(*overrides: str) -> Any:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


@pytest.fixture(scope="module")
def default_alerts() -> dict[str, Any]:
    """conf/alerts/default.yaml as composed (without ALERT_WEBHOOK_URL), composed once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ALERT_WEBHOOK_URL", raising=False)
        raw = OmegaConf.to_container(composed().alerts, resolve=True)
    assert isinstance(raw, dict)
    return raw  # type: ignore[return-value]


def with_changes(base: dict[str, Any], change: Any) -> dict[str, Any]:
    raw = copy.deepcopy(base)
    change(raw)
    return raw


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        AlertsConfig.model_validate(raw)
    return format_validation_error(info.value, prefix="alerts")


def test_default_group_validates_in_the_run_graph(monkeypatch: Any) -> None:
    monkeypatch.delenv("ALERT_WEBHOOK_URL", raising=False)
    raw = to_container(composed("mode=paper"))
    # Only the nodes the router touches: importing every node (ml, panel) is slow here.
    keep = {"mode", "symbol", "timeframe", "redaction", "logging", "db", "journal", "alerts"}
    raw = {k: v for k, v in raw.items() if k in keep}
    raw["runner"] = {"main": "alerts"}
    validated = validate_config(raw)
    spec = validated.nodes["alerts"]
    assert spec.needs == ("journal",)
    # logging is infrastructure: ordered before every other node without being listed
    assert validated.order.index("logging") < validated.order.index("alerts")
    assert validated.order.index("journal") < validated.order.index("alerts")
    config = spec.config
    assert isinstance(config, AlertsConfig)
    kinds = {type(r) for r in config.rules}
    assert {EventCountRuleConfig, HeartbeatSilenceRuleConfig, JournalSpillRuleConfig} <= kinds
    names = [r.name for r in config.rules]
    for wanted in (
        "repeated_order_rejections",
        "stale_data",
        "database_connection_failures",
        "journal_spilling",
        "loop_stalled",
        "max_drawdown_breach",
        "engine_failed",
    ):
        assert wanted in names
    hook = next(c for c in config.channels if isinstance(c, WebhookChannelConfig))
    assert hook.url is None  # no ALERT_WEBHOOK_URL: log only


def test_webhook_url_from_env_is_a_secret(monkeypatch: Any) -> None:
    url = "https://hooks.example.com/services/T000/B000/XYZsecret"
    monkeypatch.setenv("ALERT_WEBHOOK_URL", url)
    raw = OmegaConf.to_container(
        composed("+alerts.channels.1.headers.Authorization=Bearer tok123").alerts, resolve=True
    )
    config = AlertsConfig.model_validate(raw)
    hook = config.channels[1]
    assert hook.url.get_secret_value() == url
    secrets = collect_secrets([config])  # what the runner hands the redactor
    assert url in secrets and "Bearer tok123" in secrets
    assert url not in repr(hook)


def test_alerts_off_disables_the_node() -> None:
    assert composed("alerts=off").alerts.enabled is False


def test_mistakes_are_reported_with_dotted_keys_and_no_secret_echo(
    default_alerts: dict[str, Any],
) -> None:
    def change(raw: dict[str, Any]) -> None:
        raw["rules"][0]["threshold"] = 0
        raw["rules"][1]["bogus"] = 1
        raw["rules"][2]["_target_"] = "atb.alerts.rules.Nope"
        raw["channels"][1]["url"] = "ftp://user:pw@example.com/tok3n"
        raw["tick"] = -1

    found = problems(with_changes(default_alerts, change))
    text = "\n".join(found)
    assert "alerts.rules.0.threshold: Input should be greater than or equal to 1" in text
    assert "alerts.rules.1.bogus: unknown key" in text
    assert "alerts.rules.2._target_: cannot import 'atb.alerts.rules.Nope'" in text
    assert "alerts.channels.1.url: must be an http:// or https:// URL" in text
    assert "alerts.tick:" in text
    assert "tok3n" not in text and "pw@" not in text


def test_duplicate_names_and_rules_that_select_nothing(default_alerts: dict[str, Any]) -> None:
    found = problems(
        with_changes(default_alerts, lambda r: r["rules"][1].update(name=r["rules"][0]["name"]))
    )
    assert any(p.startswith("alerts.rules.1.name: duplicate name") for p in found), found
    rule = {"_target_": "atb.alerts.rules.EventCountRule", "name": "x"}
    found = problems({**default_alerts, "rules": [rule]})
    assert any(p.startswith("alerts.rules.0.events: name at least one event") for p in found)
    found = problems({**default_alerts, "channels": [{"_target_": rule["_target_"]}]})
    assert any("alerts.channels.0._target_" in p and "not an alert channel" in p for p in found)


def test_users_add_rules_in_yaml() -> None:
    rule = (
        "alerts.rules=[{_target_: atb.alerts.rules.EventCountRule, name: gaps, "
        "events: [data_gap], threshold: 2, window: 60, severity: info}]"
    )
    raw = OmegaConf.to_container(composed(rule).alerts, resolve=True)
    (only,) = AlertsConfig.model_validate(raw).rules
    assert only.name == "gaps" and only.events == ["data_gap"] and only.threshold == 2
