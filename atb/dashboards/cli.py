"""`atb dashboards list`, `atb dashboards path NAME` and `atb dashboards run NAME [options]`.

The seed's contract: `--db-url`, `--update-interval` and `--logs-dir` are forwarded only
to a dashboard that declares it supports them; any other dashboard gets a printed notice
instead of a silently dropped flag. Defaults come from the `dashboards` config group.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from atb.dashboards import OPTIONS
from atb.dashboards.auth import EXPOSURE_HINT, PASSWORD_ENV, auth_from_env
from atb.dashboards.bind import STANDALONE_PORT_ENV, resolve_bind
from atb.dashboards.discovery import (
    DashboardBroken,
    DashboardInfo,
    DashboardNotFound,
    app_factory,
    discover,
    find,
)
from atb.runtime.exposure import ExposureError, check_exposure


def configure_logging() -> None:
    from atb.logging import configure_logging as configure

    configure()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atb dashboards", description="Panel dashboards.")
    sub = parser.add_subparsers(dest="action", required=True)
    lst = sub.add_parser("list", help="list the discovered dashboards")
    lst.add_argument("--no-check", action="store_true", help="do not import each dashboard")
    path = sub.add_parser("path", help="print a dashboard's script (for `panel serve`)")
    path.add_argument("name")
    run = sub.add_parser("run", help="serve one dashboard")
    run.add_argument("name")
    run.add_argument(
        "--host",
        default=None,
        help="interface to listen on (default: HOST, else 0.0.0.0 on a platform, else 127.0.0.1)",
    )
    run.add_argument(
        "--port", type=int, default=None, help="HTTP port (default: PORT, else from config)"
    )
    run.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help=f"serve beyond loopback without the {PASSWORD_ENV} login",
    )
    run.add_argument("--db-url", default=None, help="database to read (read-only)")
    run.add_argument("--update-interval", type=float, default=None, help="seconds per refresh")
    run.add_argument("--logs-dir", default=None, help="directory of CSV trade exports")
    return parser


def format_list(dashboards: list[DashboardInfo]) -> str:
    if not dashboards:
        return "no dashboards found"
    width = max(len(d.name) for d in dashboards)
    lines = []
    for d in dashboards:
        opts = ", ".join(f"--{o.replace('_', '-')}" for o in OPTIONS if o in d.options) or "-"
        if d.broken:
            lines.append(f"{d.name.ljust(width)}  BROKEN  {d.error}")
        else:
            lines.append(f"{d.name.ljust(width)}  ok      {d.description}  [options: {opts}]")
    return "\n".join(lines)


def resolve_settings(
    info: DashboardInfo, args: argparse.Namespace, defaults: dict[str, Any]
) -> tuple[dict[str, Any], list[str]]:
    """The options forwarded to the dashboard, plus notices for the ones it ignores."""
    values: dict[str, Any] = {}
    notices: list[str] = []
    for option in OPTIONS:
        given = getattr(args, option)
        flag = f"--{option.replace('_', '-')}"
        if not info.supports(option):
            if given is not None:
                notices.append(f"note: dashboard '{info.name}' does not support {flag}; ignored")
            continue
        value = given if given is not None else defaults.get(option)
        if value is not None:
            values[option] = value
    return values, notices


def run(args: argparse.Namespace) -> int:
    from atb.api.handlers import database_routes
    from atb.dashboards.server import DashboardServer
    from atb.dashboards.settings import DashboardSettings, config_defaults

    try:
        info = find(args.name)
        factory = app_factory(info)
    except DashboardNotFound as exc:
        print(f"atb dashboards: {exc}", file=sys.stderr)
        return 2
    except DashboardBroken as exc:
        print(f"atb dashboards: '{args.name}' is broken: {exc}", file=sys.stderr)
        return 1
    defaults = config_defaults(info.name)
    values, notices = resolve_settings(info, args, defaults)
    for notice in notices:
        print(notice, file=sys.stderr)
    settings = DashboardSettings.model_validate(values)
    try:
        bind = resolve_bind(
            args.host or str(defaults.get("host") or "auto"),
            int(defaults.get("port") or 5006),
            STANDALONE_PORT_ENV,
            "dashboards.port",
        )
    except ValueError as exc:
        print(f"atb dashboards: {exc}", file=sys.stderr)
        return 2
    if args.port is not None:
        bind = replace(bind, port=args.port, port_source="--port")
    host, port = bind.host, bind.port
    auth = auth_from_env()
    allow = args.allow_unauthenticated or bool(defaults.get("allow_unauthenticated"))
    try:
        check_exposure(
            "atb dashboards",
            host,
            auth is not None,
            allow,
            EXPOSURE_HINT,
            "pass --allow-unauthenticated",
        )
    except ExposureError as exc:
        print(str(exc), file=sys.stderr)
        return 2

    def page() -> Any:
        return factory(settings)

    basic = None if auth is None else (auth.user, auth.password)
    api = database_routes(settings.db_url, basic)
    server = DashboardServer({info.name: page}, host=host, port=port, auth=auth, extra_routes=api)
    try:
        server.start()
    except OSError as exc:
        print(f"atb dashboards: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        return 1
    print(
        f"serving dashboard '{info.name}' on {host}:{server.port} ({bind.sources}; "
        f"login {'required' if auth else 'off'}) at {server.app_url(info.name)} (Ctrl-C to stop)"
    )
    sys.stdout.flush()
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def command(name: str, argv: Sequence[str]) -> int:
    configure_logging()
    args = build_parser().parse_args(list(argv))
    if args.action == "list":
        print(format_list(discover(check=not args.no_check)))
        return 0
    if args.action == "path":
        try:
            print(find(args.name).path)
        except DashboardNotFound as exc:
            print(f"atb dashboards: {exc}", file=sys.stderr)
            return 2
        return 0
    return run(args)


def main(argv: Sequence[str] | None = None) -> int:
    return command("dashboards", sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
