"""`atb api schema [NAME]`: the JSON Schema of an API answer (all of them without NAME)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from atb.api.schemas import SCHEMAS, json_schema


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atb api", description="The read-only JSON API (/api/*) served by the health "
        "server of a running session and by `atb dashboards run`.",
    )  # fmt: skip
    sub = parser.add_subparsers(dest="action", required=True)
    schema = sub.add_parser("schema", help="print a response's JSON Schema")
    schema.add_argument("name", nargs="?", help=f"one of: {', '.join(SCHEMAS)} (default: all)")
    return parser


def command(name: str, argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    if args.name is None:
        out = {n: json_schema(n) for n in SCHEMAS}
    else:
        try:
            out = json_schema(args.name)
        except KeyError as exc:
            print(f"atb api: {exc.args[0]}", file=sys.stderr)
            return 2
    print(json.dumps(out, indent=2))
    return 0
