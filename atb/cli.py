"""The `atb` console script: the seed-compatible commands.

Each command lives in the package it belongs to and is imported only when it runs, so
`atb --help` never pays for panel, bokeh, ccxt or SQLAlchemy.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import NamedTuple


class Command(NamedTuple):
    module: str
    summary: str


COMMANDS: dict[str, Command] = {
    "run": Command("atb.__main__", "run with Hydra overrides (same as `python -m atb ...`)"),
    "live": Command(
        "atb.engine.live_cli",
        "paper/live trading: atb live ml_basic --symbol BTCUSDT --paper-trading [key=value ...]",
    ),
    "live-health": Command(
        "atb.engine.live_cli",
        "trading with the health server: PORT=9000 atb live-health -- ml_basic --paper-trading",
    ),
    "dashboards": Command("atb.dashboards.cli", "list and run the Panel dashboards"),
    "api": Command("atb.api.cli", "the JSON API's schemas: atb api schema [metrics|trades|...]"),
    "db": Command("atb.db.cli", "database migrations: atb db upgrade | atb db current"),
    "tests": Command("atb.db.cli", "operational self-tests: atb tests heartbeat"),
    "alerts": Command("atb.alerts.cli", "alert channels: atb alerts test"),
    "data": Command(
        "atb.data.cli",
        "candles: atb data download --exchange binance --symbol BTC/USDT --timeframe 1m ...",
    ),
}


def render_help() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: atb <command> [options]",
        "",
        "atb: an observability-first crypto trading bot runtime.",
        "",
        "commands:",
    ]
    lines += [f"  {name.ljust(width)}  {cmd.summary}" for name, cmd in COMMANDS.items()]
    lines += [
        "",
        "Run `atb <command> --help` for a command's options; `python -m atb --help` for config.",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(render_help())
        return 0 if args else 2
    if args[0] in ("--version", "-V"):
        from atb.__main__ import version_line

        print(version_line())
        return 0
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        print(f"atb: unknown command '{name}'\n\n{render_help()}", file=sys.stderr)
        return 2
    if name == "run":
        from atb.__main__ import main as run_main

        sys.argv = ["atb run"]
        run_main(rest)
        return 0
    module = importlib.import_module(command.module)
    entry = getattr(module, "command", None) or module.main
    result = entry(name, rest)
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
