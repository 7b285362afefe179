"""`atb data download`: candles from an exchange into a file `data=csv` reads.

Errors are one line on stderr and a non-zero exit (2: bad arguments, 1: the exchange or the
data), never a traceback; the output file is only ever replaced by a complete, validated one.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

USAGE = (
    "atb data download --exchange binance --symbol BTC/USDT --timeframe 1m "
    "--since 2023-01-01 [--until 2024-01-01] --out data/BTCUSDT-1m.csv.gz"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def _time(text: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date/time (use 2023-01-01)") from None
    if stamp is pd.NaT:
        raise argparse.ArgumentTypeError(f"'{text}' is not a date/time (use 2023-01-01)")
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _parser() -> _Parser:
    p = _Parser(prog="atb data download", usage=USAGE, description=__doc__)
    p.add_argument("--exchange", default="binance", help="ccxt exchange id (default binance)")
    p.add_argument("--symbol", required=True, help="market, e.g. BTC/USDT (or BTCUSDT)")
    p.add_argument("--timeframe", required=True, help="candle size, e.g. 1m, 1h")
    p.add_argument("--since", required=True, type=_time, help="first candle (UTC)")
    p.add_argument("--until", type=_time, default=None, help="stop before this time (UTC)")
    p.add_argument("--out", required=True, type=Path, help="CSV file (.csv or .csv.gz)")
    p.add_argument("--base-url", default=None, help="rebase the exchange's REST URLs here")
    p.add_argument("--page-limit", type=int, default=1000, help="candles per request")
    p.add_argument("--retries", type=int, default=5, help="retries per request on network errors")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def download(argv: Sequence[str]) -> int:
    from atb.data.download import Downloader, DownloadError, DownloadRequest
    from atb.data.loader import timeframe_delta

    try:
        args = _parser().parse_args(list(argv))
        try:
            timeframe_delta(args.timeframe)
        except ValueError:
            raise _UsageError(f"--timeframe: unknown timeframe '{args.timeframe}'") from None
        if args.until is not None and args.until <= args.since:
            raise _UsageError("--until must be after --since")
        if not str(args.out).endswith((".csv", ".csv.gz")):
            raise _UsageError(f"--out: {args.out} must end in .csv or .csv.gz")
        if args.page_limit < 1:
            raise _UsageError("--page-limit must be >= 1")
    except _UsageError as exc:
        print(f"atb data download: {exc}", file=sys.stderr)
        return 2
    request = DownloadRequest(
        exchange=args.exchange,
        symbol=args.symbol,
        timeframe=args.timeframe,
        since=args.since,
        until=args.until,
        out=args.out,
        base_url=args.base_url,
        page_limit=args.page_limit,
        retries=max(args.retries, 0),
        progress=False if args.no_progress else None,
    )
    try:
        result = Downloader(request).run()
    except DownloadError as exc:
        print(f"atb data download: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(
            "atb data download: interrupted; what was fetched is kept in a .part file"
            " next to the output, re-run the same command to resume",
            file=sys.stderr,
        )
        return 130
    span = (
        f"{result.first:%Y-%m-%d %H:%M} -> {result.last:%Y-%m-%d %H:%M} UTC"
        if result.first is not None
        else "empty"
    )
    resumed = f" (resumed from {result.resumed_from})" if result.resumed_from else ""
    print(
        f"{result.out}: {result.bars:,} bars {span}, {result.new_bars:,} new{resumed}",
        flush=True,
    )
    return 0


def command(name: str, argv: Sequence[str]) -> int:
    args = list(argv)
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: atb data download [options]\n  e.g. {USAGE}")
        return 0 if args else 2
    if args[0] != "download":
        print(f"atb data: unknown command '{args[0]}' (try: atb data download --help)",
              file=sys.stderr)  # fmt: skip
        return 2
    return download(args[1:])
