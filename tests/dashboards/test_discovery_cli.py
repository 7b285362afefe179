"""Discovery, `atb dashboards list|run` option forwarding, config group and the node."""

from __future__ import annotations

import argparse
import json
import re
import urllib.request
from pathlib import Path

import pytest
from atb_testkit import sample
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from atb.__main__ import CONFIG_DIR
from atb.config.validate import validate_config
from atb.dashboards import cli
from atb.dashboards.discovery import (
    DashboardBroken,
    discover,
    find,
    import_dashboard,
    read_metadata,
)
from atb.dashboards.node import DashboardConfig, DashboardNode
from atb.dashboards.settings import parse_serve_args, settings_from_env
from atb.runtime.context import RunContext


def test_discovers_the_three_dashboards_with_metadata() -> None:
    found = {d.name: d for d in discover()}
    assert set(found) >= {"monitoring", "backtesting", "market_prediction"}
    assert found["monitoring"].options == {"db_url", "update_interval"}
    assert found["backtesting"].supports("logs_dir")
    assert found["market_prediction"].supports("update_interval")
    assert all(not d.broken for d in found.values())


def test_broken_dashboard_is_listed_with_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good.py").write_text(
        'DASHBOARD = {"name": "good", "description": "fine", "options": ["db_url"]}\n'
        "def create_app(settings):\n    return None\n"
    )
    (tmp_path / "bad.py").write_text(
        'import not_a_module_anywhere\nDASHBOARD = {"name": "bad", "description": "x"}\n'
    )
    (tmp_path / "helper.py").write_text("X = 1\n")  # no DASHBOARD: not a dashboard
    (tmp_path / "odd.py").write_text('DASHBOARD = {"name": "odd", "options": ["colour"]}\n')
    monkeypatch.setenv("ATB_PANELS_DIR", str(tmp_path))
    dashboards = {d.name: d for d in discover(check=True)}
    assert set(dashboards) == {"good", "bad", "odd"}
    assert not dashboards["good"].broken
    assert "No module named 'not_a_module_anywhere'" in (dashboards["bad"].error or "")
    assert "unknown options" in (dashboards["odd"].error or "")
    assert cli.command("dashboards", ["list"]) == 0
    out = capsys.readouterr().out
    assert "bad" in out and "BROKEN" in out and "not_a_module_anywhere" in out
    with pytest.raises(DashboardBroken):
        import_dashboard(dashboards["bad"])
    assert cli.command("dashboards", ["run", "bad"]) == 1
    assert cli.command("dashboards", ["run", "nope"]) == 2


def test_metadata_is_read_without_importing(tmp_path: Path) -> None:
    path = tmp_path / "x.py"
    path.write_text('raise SystemExit("never run")\nDASHBOARD = {"name": "x", "options": []}\n')
    info = read_metadata(path)
    assert info is not None and info.name == "x" and not info.broken


def _args(**values: object) -> argparse.Namespace:
    base = {"db_url": None, "update_interval": None, "logs_dir": None}
    return argparse.Namespace(**{**base, **values})


def test_unsupported_options_print_a_notice() -> None:
    info = find("market_prediction")
    values, notices = cli.resolve_settings(
        info, _args(db_url="sqlite:///x.db", logs_dir="logs", update_interval=2.0), {}
    )
    assert values == {"db_url": "sqlite:///x.db", "update_interval": 2.0}
    assert len(notices) == 1 and "--logs-dir" in notices[0]
    values, notices = cli.resolve_settings(
        find("monitoring"), _args(), {"db_url": "sqlite:///d.db", "update_interval": 7}
    )
    assert values == {"db_url": "sqlite:///d.db", "update_interval": 7} and notices == []


def test_config_group_defaults_and_panel_serve_args() -> None:
    settings = settings_from_env("monitoring", argv=[], environ={})
    assert settings.update_interval == 5 and settings.db_url == "sqlite:///atb.db"
    settings = settings_from_env(
        "backtesting",
        argv=["--db-url", "sqlite:///b.db", "--logs-dir", "logs"],
        environ={"ATB_DASHBOARD_UPDATE_INTERVAL": "9"},
    )
    assert settings.db_url == "sqlite:///b.db" and settings.update_interval == 9
    assert str(settings.logs_dir) == "logs"
    assert parse_serve_args(["--update-interval", "2", "--other"]) == {"update_interval": 2.0}


@pytest.mark.parametrize("option", ["monitoring", "backtesting", "market_prediction", "all"])
def test_dashboards_group_composes_into_a_node(option: str) -> None:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"dashboards={option}", "db.url=sqlite:///x.db"])
    validated = validate_config(cfg)
    spec = validated.nodes["dashboards"]
    assert spec.cls is DashboardNode and spec.needs == ("db",)
    assert spec.config.db_url == "sqlite:///x.db"  # type: ignore[attr-defined]
    order = validated.order
    assert order.index("db") < order.index("dashboards")


def test_unknown_app_fails_validation() -> None:
    with pytest.raises(ValueError, match="unknown dashboards"):
        DashboardConfig.model_validate({"_target_": "x", "apps": ["monitorin"]})


def test_node_serves_and_stops(seeded: tuple[str, sample.Expected]) -> None:
    url, _ = seeded
    config = DashboardConfig.model_validate(
        {
            "_target_": "atb.dashboards.node.DashboardNode",
            "apps": ["monitoring"],
            "port": 0,
            "db_url": url,
            "update_interval": 1,
        }
    )
    node = DashboardNode(config, RunContext(mode="paper"))
    node.start()
    try:
        page = node.urls["monitoring"]
        with urllib.request.urlopen(page, timeout=30) as resp:
            body = resp.read().decode()
        assert resp.status == 200
        assert "<title>atb · monitoring</title>" in body
        links = re.findall(r'(?:src|href)="([^"]+)"', body)
        assert any(link.startswith("static/js/bokeh.min.js") for link in links)
        # Every script and stylesheet comes from this server (no CDN): relative links only.
        assert [link for link in links if "//" in link] == []
        # The read-only JSON API is served beside the pages, over the same database.
        base = page.rsplit("/", 1)[0]
        with urllib.request.urlopen(f"{base}/api/trades?limit=2", timeout=30) as resp:
            trades = json.loads(resp.read())
        assert resp.status == 200 and trades["total"] >= len(trades["items"])
    finally:
        node.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(page, timeout=5)
