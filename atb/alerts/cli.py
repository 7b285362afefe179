"""`atb alerts ...`: prove the alert path works before going live.

    atb alerts test [--webhook-url URL] [--no-record] [key=value ...]
    atb alerts rules [key=value ...]

`test` composes the run's config (the same `conf/` and overrides as `python -m atb`),
sends one TEST alert through every configured channel with the channel's own timeout /
retry policy, prints ✅ / ❌ per channel and exits 0 only if every channel delivered and
at least one of them is external (a log line is not a page). The test is recorded in
`system_events` (event_type TEST, name alert_test) when the configured database is
reachable.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

USAGE = "atb alerts {test,rules} [options] [key=value ...]"


def command(name: str, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog=f"atb {name}", description="alert channels and rules")
    sub = parser.add_subparsers(dest="action", metavar="{test,rules}")
    test = sub.add_parser("test", help="send a TEST alert through every configured channel")
    test.add_argument("--webhook-url", help="webhook URL to test (default: ALERT_WEBHOOK_URL)")
    test.add_argument(
        "--apprise-url", action="append", default=[], metavar="URL",
        help="Apprise URL to test (repeatable; default: ALERT_APPRISE_URLS)",
    )  # fmt: skip
    test.add_argument(
        "--no-record", action="store_true", help="do not record the test in system_events"
    )
    test.add_argument(
        "overrides", nargs="*", help="Hydra overrides, e.g. alerts.channels.1.retries=0"
    )
    rules = sub.add_parser("rules", help="list the configured rules and channels")
    rules.add_argument("overrides", nargs="*", help="Hydra overrides")
    args = parser.parse_args(argv)
    if args.action is None:
        parser.print_help()
        return 2
    try:
        cfg = compose_config(list(args.overrides))
        if args.action == "rules":
            return list_rules(cfg)
        return run_test(cfg, webhook_url=args.webhook_url, record=not args.no_record,
                        apprise_urls=args.apprise_url)  # fmt: skip
    except ConfigProblem as exc:
        for line in exc.lines:
            print(f"config error: {line}", file=sys.stderr)
        return 2


class ConfigProblem(Exception):
    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def compose_config(overrides: list[str]) -> Any:
    """The run's composed config (unresolved), exactly as `python -m atb <overrides>`."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from atb.__main__ import CONFIG_DIR

    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name="config", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigProblem([line for line in str(exc).splitlines() if line.strip()]) from None


def _section(cfg: Any, key: str) -> dict[str, Any]:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    node = cfg.get(key)
    if node is None:
        return {}
    try:
        data = OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigProblem([f"{key}: {str(exc).splitlines()[0]}"]) from None
    return {str(k): v for k, v in data.items()} if isinstance(data, dict) else {}


def _alerts_config(cfg: Any, webhook_url: str | None, apprise_urls: list[str] | None = None) -> Any:
    from pydantic import ValidationError

    from atb.alerts.config import AlertsConfig
    from atb.config.base import format_validation_error

    raw = _section(cfg, "alerts")
    if not raw:
        raw = {"_target_": "atb.alerts.router.AlertRouter"}
    if webhook_url is not None:
        channels = list(raw.get("channels") or [])
        for entry in channels:
            if isinstance(entry, dict) and str(entry.get("_target_", "")).endswith(
                "WebhookChannel"
            ):
                entry["url"] = webhook_url
                break
        else:
            channels.append({"_target_": "atb.alerts.channels.WebhookChannel", "url": webhook_url})
        raw["channels"] = channels
    if apprise_urls:
        channels = list(raw.get("channels") or [])
        for entry in channels:
            if isinstance(entry, dict) and str(entry.get("_target_", "")).endswith(
                "AppriseChannel"
            ):
                entry["urls"] = list(apprise_urls)
                break
        else:
            channels.append({"_target_": "atb.alerts.apprise_channel.AppriseChannel",
                             "urls": list(apprise_urls)})  # fmt: skip
        raw["channels"] = channels
    try:
        return AlertsConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigProblem(format_validation_error(exc, prefix="alerts")) from None


def _context(cfg: Any) -> Any:
    from atb.runtime.context import RunContext

    strategy = cfg.get("strategy")
    return RunContext(
        mode=str(cfg.get("mode") or "paper"),
        symbol=str(cfg.get("symbol") or "BTCUSDT"),
        strategy=str(strategy.get("name")) if strategy is not None and "name" in strategy else None,
    )


def _build_channels(config: Any, ctx: Any) -> list[Any]:
    from atb.alerts.channels import LogChannel, LogChannelConfig
    from atb.alerts.router import build_channels

    channels = build_channels(config.channels, ctx)
    if not any(isinstance(c, LogChannel) for c in channels):
        channels.insert(0, LogChannel(LogChannelConfig(), ctx))
    return channels


def list_rules(cfg: Any) -> int:

    config = _alerts_config(cfg, None)
    ctx = _context(cfg)
    if ctx.mode not in config.modes:
        # The mode is why (backtest turns the node off): say so, not "alerts=off".
        state = f"inactive in {ctx.mode} mode"
    else:
        state = "enabled" if config.enabled else "disabled (alerts=off)"
    print(f"alerts: {state}; active in modes: {', '.join(config.modes)}")
    print("rules:")
    for entry in config.rules:
        flag = "" if entry.enabled else "  (disabled)"
        kind = entry.target.rpartition(".")[2]
        extra = ""
        if getattr(entry, "events", None):
            extra = f" events={','.join(entry.events)} threshold={entry.threshold}"
            extra += f" window={entry.window:g}s"
        print(f"  - {entry.display_name()} [{entry.severity}] {kind}{extra}{flag}")
    print("channels:")
    for channel in _build_channels(config, ctx):
        info = channel.describe()
        print(f"  - {channel.name} {info.get('kind')} {info.get('target', '')}".rstrip())
    _list_notifications(cfg)
    return 0


def _list_notifications(cfg: Any) -> None:
    from pydantic import ValidationError

    from atb.config.base import format_validation_error
    from atb.notify.config import NotifyConfig

    raw = _section(cfg, "notify")
    if not raw:
        print("notifications: not configured")
        return
    try:
        notify = NotifyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigProblem(format_validation_error(exc, prefix="notify")) from None
    if not notify.enabled:
        print("notifications: disabled (notify=off)")
        return
    via = ", ".join(notify.channels) if notify.channels else "every external channel"
    print(f"notifications: in modes {', '.join(notify.modes)}, via {via}")
    for name in type(notify.routes).model_fields:
        route = getattr(notify.routes, name)
        limit = f"{route.rate_limit} per {route.per:g}s" if route.rate_limit else "no limit"
        flag = "" if route.enabled else "  (disabled)"
        print(f"  - {name}: {','.join(route.events)} ({limit}){flag}")
    daily = notify.daily_summary
    if daily.enabled:
        print(f"  - daily_summary: at {daily.at} {daily.timezone}")


def run_test(
    cfg: Any,
    webhook_url: str | None = None,
    record: bool = True,
    apprise_urls: list[str] | None = None,
) -> int:
    from atb.alerts.delivery import ChannelWorker, Result
    from atb.alerts.model import Notification
    from atb.logging.setup import configure_logging

    config = _alerts_config(cfg, webhook_url, apprise_urls)
    ctx = _context(cfg)
    _configure_redaction(config)
    # Synchronous sinks so the log channel's line lands in order with the ✅/❌ lines;
    # migrations' INFO chatter is not what an operator testing alerts wants to read.
    configure_logging({"background": False, "library_levels": {"alembic": "WARNING"}})
    channels = _build_channels(config, ctx)
    note = Notification(
        rule="alert_test",
        severity="info",
        status="test",
        summary=f"test alert from `atb alerts test` on {os.uname().nodename}: "
        "if you can read this, the channel works",
        details={"command": "atb alerts test"},
        run_id=ctx.run_id,
        mode=ctx.mode,
        strategy=ctx.strategy,
        first_seen=time.time(),
        last_seen=time.time(),
    )
    if not config.enabled:
        print("note: alerts are disabled in this config (alerts=off); testing its channels anyway")
    results: dict[str, Result] = {}
    ok = True
    external_ok = False
    for channel in channels:
        info = channel.describe()
        label = f"{channel.name} ({info['target']})" if "target" in info else channel.name
        if not channel.configured:
            label = channel.name
        if not channel.configured:
            hint = f" {channel.setup_hint}" if channel.setup_hint else ""
            print(f"⚪ {label}: not configured;{hint}")
            continue
        result = ChannelWorker(channel).deliver(note)
        results[channel.name] = result
        if result.ok:
            external_ok = external_ok or channel.external
            print(f"✅ {label}: delivered in {result.elapsed * 1000:.0f} ms"
                  f" ({result.attempts} attempt{'s' if result.attempts != 1 else ''})")  # fmt: skip
        else:
            ok = False
            print(f"❌ {label}: failed after {result.attempts} attempt"
                  f"{'s' if result.attempts != 1 else ''}: {result.error}")  # fmt: skip
    if not any(c.external and c.configured for c in channels):
        ok = False
        print("❌ no external alert channel is configured: alerts would only reach the logs "
              "(set ALERT_WEBHOOK_URL / ALERT_APPRISE_URLS, or pass --webhook-url / "
              "--apprise-url)")  # fmt: skip
    if record:
        print(_record(cfg, note, results))
    _flush_logging()
    return 0 if ok and external_ok else 1


def _configure_redaction(config: Any) -> None:
    """The webhook URL and header values are secrets for every line this command logs."""
    from atb.config.validate import collect_secrets
    from atb.logging.redaction import get_redactor

    secrets = collect_secrets([config])
    if secrets:
        get_redactor().add_secrets(secrets)


def _flush_logging() -> None:
    try:
        from atb.logging.setup import flush

        flush()
    except Exception:  # pragma: no cover - nothing left to report to
        pass


def _record(cfg: Any, note: Any, results: dict[str, Any]) -> str:
    """Journal one TEST row in system_events if the configured database is reachable.

    Goes through the journal's `emit()` contract (not its row format), with a journal
    that does not listen to the log stream: only this row is written.
    """
    from atb.logging.redaction import redact_text
    from atb.runtime.context import RunContext

    raw = _section(cfg, "db")
    if not raw:
        return "(not recorded: no database configured)"
    try:
        from atb.db.journal import Journal, JournalConfig
        from atb.db.node import Database, DatabaseConfig

        ctx = RunContext(run_id=note.run_id)
        db = Database(DatabaseConfig.model_validate(raw), ctx)
    except Exception as exc:
        return f"(not recorded: {type(exc).__name__}: {redact_text(str(exc).splitlines()[0])})"
    try:
        db.start()
        journal = Journal(JournalConfig.model_validate({"_target_": "atb.db.journal.Journal",
                                                        "listen": False}), ctx, db)  # fmt: skip
        journal.start()
        try:
            journal.emit(test_event(note, results))
        finally:
            journal.stop()
        if journal.state().get("written"):
            return f"recorded in system_events ({db.redacted_url})"
        return f"(not recorded: {journal.state().get('last_error') or 'journal did not write'})"
    except Exception as exc:
        text = str(exc).strip()
        return (
            f"(not recorded: {redact_text(text.splitlines()[0] if text else type(exc).__name__)})"
        )
    finally:
        db.stop()


def test_event(note: Any, results: dict[str, Any]) -> dict[str, Any]:
    external = {n: r for n, r in results.items() if r.external}
    sent = [n for n, r in external.items() if r.ok]
    failed = [n for n, r in external.items() if not r.ok]
    return {
        "id": note.id,
        "event_type": "TEST",
        "severity": "INFO",
        "message": note.text(),
        "name": "alert_test",
        "logger": "atb.alerts.cli",
        "component": "alerts",
        "details": {"alert": note.alert(), "delivery": {n: r.view() for n, r in results.items()}},
        "alert_sent": bool(sent),
        "alert_method": ",".join(sent) or ("failed:" + ",".join(failed) if failed else "log"),
    }
