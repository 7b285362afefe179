"""`atb live` and `atb live-health`: the seed's commands, mapped onto Hydra overrides.

The flags are sugar: each becomes one `key=value` override, and anything of the form
`key=value` after them is passed through, so the two ways of running never drift apart.
"""

from __future__ import annotations

import argparse
import sys


def build_parser(name: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"atb {name}",
        description=(
            "Run a strategy on live market data: paper (simulated fills, the default) or live "
            "(real orders). Extra key=value arguments are passed to Hydra as overrides."
            + (
                " The health server is on (PORT / HEALTH_CHECK_PORT)."
                if name == "live-health"
                else ""
            )
        ),
    )
    parser.add_argument("strategy", help="strategy name (a file in conf/strategy/), e.g. ml_basic")
    parser.add_argument("--symbol", help="market symbol, e.g. BTCUSDT")
    parser.add_argument("--timeframe", help="candle timeframe, e.g. 1h")
    trading = parser.add_mutually_exclusive_group()
    trading.add_argument("--paper-trading", action="store_true", help="simulated fills (default)")
    trading.add_argument("--live-trading", action="store_true", help="real orders via ccxt")
    parser.add_argument(
        "--i-understand-the-risks", action="store_true", help="required with --live-trading"
    )
    parser.add_argument("--check-interval", type=float, help="seconds between polls")
    parser.add_argument("--balance", type=float, help="starting balance (paper)")
    parser.add_argument("--max-position", type=float, help="max position as a fraction of balance")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, key=value")
    return parser


def to_overrides(name: str, argv: list[str]) -> list[str]:
    args = build_parser(name).parse_intermixed_args([a for a in argv if a != "--"])
    bad = [o for o in args.overrides if "=" not in o]
    if bad:
        build_parser(name).error(f"unexpected arguments (not key=value): {' '.join(bad)}")
    overrides = [f"strategy={args.strategy}", f"mode={'live' if args.live_trading else 'paper'}"]
    if args.symbol:
        overrides.append(f"symbol={args.symbol}")
    if args.timeframe:
        overrides.append(f"timeframe={args.timeframe}")
    if args.i_understand_the_risks:
        overrides.append("live.i_understand_the_risks=true")
    if args.check_interval is not None:
        overrides.append(f"live.check_interval={args.check_interval:g}")
    if args.balance is not None:
        overrides.append(f"live.initial_balance={args.balance:g}")
    if args.max_position is not None:
        overrides.append(f"live.max_position={args.max_position:g}")
    if name == "live-health":
        overrides.append("health=on")
    return overrides + list(args.overrides)


def command(name: str, argv: list[str]) -> int:
    from atb.__main__ import main

    overrides = to_overrides(name, argv)
    sys.argv = [f"atb {name}"]
    main(overrides)
    return 0
