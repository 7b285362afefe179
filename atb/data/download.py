"""Download candles through ccxt `fetch_ohlcv` into a file the loader reads.

Paginated (the exchange's page limit, forward from `since`), rate-limited (ccxt's own
limiter, plus backoff on network errors and 429s), resumable (an existing output is read
and only the candles after its last one are fetched) and never half-done-but-complete-
looking: everything is written to `<out stem>.part.csv[.gz]` and renamed over `<out>` only
after the whole file passed the loader's validation. A failed or interrupted run leaves the
`.part` file, which the next run resumes from when it is still a valid file.

Only closed candles are written: the candle still forming at the exchange would change
after it was saved.
"""

from __future__ import annotations

import gzip
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atb.data.loader import COLUMNS, DataError, load_bars, timeframe_delta, validate_bars

FLUSH_ROWS = 50_000
"""Rows buffered before they are appended to the .part file (one gzip member each)."""


class DownloadError(RuntimeError):
    """A download that cannot go on; the message is the one line the user sees."""


@dataclass(frozen=True)
class DownloadRequest:
    exchange: str
    symbol: str
    timeframe: str
    since: pd.Timestamp
    until: pd.Timestamp | None
    out: Path
    base_url: str | None = None
    page_limit: int = 1000
    retries: int = 5
    backoff: float = 1.0
    progress: bool | None = None  # None: only on a terminal


@dataclass(frozen=True)
class DownloadResult:
    out: Path
    bars: int
    new_bars: int
    first: pd.Timestamp | None
    last: pd.Timestamp | None
    resumed_from: str | None


def make_client(exchange: str, base_url: str | None) -> Any:
    import ccxt

    from atb.exchange.urls import rebase_api_urls

    cls = getattr(ccxt, exchange, None)
    if cls is None or exchange not in ccxt.exchanges:
        raise DownloadError(f"unknown exchange '{exchange}' (ccxt has no such exchange)")
    client = cls(
        {
            "enableRateLimit": True,
            "timeout": 30_000,
            # Spot markets only: the futures exchangeInfo is neither needed nor wanted.
            "options": {"defaultType": "spot", "fetchMarkets": {"types": ["spot"]}},
        }
    )
    if base_url:
        rebase_api_urls(client, base_url)
    return client


def _is_gzip(path: Path) -> bool:
    return path.name.endswith(".gz")


def _csv_text(rows: list[list[float]], header: bool) -> str:
    stamps = np.array([r[0] for r in rows], dtype="int64").astype("M8[ms]")
    text = np.datetime_as_string(stamps, unit="s")
    lines = ["timestamp," + ",".join(COLUMNS)] if header else []
    lines += [
        f"{t}Z,{o!r},{h!r},{lo!r},{c!r},{v!r}"
        for t, (_, o, h, lo, c, v) in zip(text.tolist(), rows, strict=True)
    ]
    return "\n".join(lines) + "\n"


def _append(path: Path, rows: list[list[float]], header: bool) -> None:
    data = _csv_text(rows, header).encode()
    with path.open("ab") as fh:
        fh.write(gzip.compress(data, 6) if _is_gzip(path) else data)
        fh.flush()


def _frame(rows: list[list[float]]) -> pd.DataFrame:
    array = np.asarray(rows, dtype=float).reshape(-1, 6)
    index = pd.DatetimeIndex(array[:, 0].astype("int64").astype("M8[ms]"), name="time")
    frame = pd.DataFrame(
        array[:, 1:], columns=list(COLUMNS), index=index.tz_localize("UTC").as_unit("ns")
    )
    return frame


class Downloader:
    def __init__(
        self,
        request: DownloadRequest,
        client: Any | None = None,
        now_ms: Callable[[], int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.request = request
        self.client = client
        self._now_ms = now_ms or (lambda: int(time.time() * 1000))
        self._sleep = sleep
        delta = timeframe_delta(request.timeframe)
        if delta is None:
            raise DownloadError(f"timeframe '{request.timeframe}' has no fixed length")
        self.step_ms = int(delta.total_seconds() * 1000)

    @property
    def part(self) -> Path:
        # `X.csv.gz` -> `X.part.csv.gz`: never the final name, and still read (gzip
        # inferred from the suffix) by the loader when a later run resumes from it.
        out = self.request.out
        suffix = ".csv.gz" if out.name.endswith(".csv.gz") else ".csv"
        return out.with_name(out.name[: -len(suffix)] + ".part" + suffix)

    # -- the pieces ---------------------------------------------------------------------
    def _market(self, client: Any) -> str:
        import ccxt

        from atb.exchange.ccxt_exchange import CcxtExchange

        req = self.request
        try:
            markets = self._call(client.load_markets)
        except ccxt.BaseError as exc:
            raise DownloadError(f"{req.exchange}: cannot load markets: {_short(exc)}") from exc
        try:
            symbol = str(CcxtExchange._resolve_market(markets, req.symbol)["symbol"])
        except ValueError:
            raise DownloadError(f"{req.exchange} has no market '{req.symbol}'") from None
        timeframes = getattr(client, "timeframes", None) or {}
        if timeframes and req.timeframe not in timeframes:
            raise DownloadError(
                f"{req.exchange} has no '{req.timeframe}' candles (has {', '.join(timeframes)})"
            )
        return symbol

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Retry network trouble (timeouts, 5xx, 429/418) with backoff; raise the rest."""
        import ccxt

        attempt = 0
        while True:
            try:
                return fn(*args, **kwargs)
            except ccxt.NetworkError:
                attempt += 1
                if attempt > self.request.retries:
                    raise
                self._sleep(self.request.backoff * 2 ** (attempt - 1))

    def _existing(self) -> tuple[pd.DataFrame | None, str | None]:
        """What is already on disk: a valid .part (an interrupted run), else the output."""
        req = self.request
        for path in (self.part, req.out):
            if not path.is_file():
                continue
            try:
                bars = load_bars(path, req.timeframe)
            except DataError as exc:
                if path == self.part:  # torn by a kill mid-write: start it again
                    path.unlink()
                    continue
                raise DownloadError(f"existing {exc} (fix or move it to download afresh)") from exc
            if path == req.out:
                shutil.copyfile(req.out, self.part)
            return bars, str(path)
        return None, None

    # -- the download -------------------------------------------------------------------
    def run(self) -> DownloadResult:
        import ccxt

        req = self.request
        if self.client is None:
            self.client = make_client(req.exchange, req.base_url)
        symbol = self._market(self.client)
        req.out.parent.mkdir(parents=True, exist_ok=True)
        existing, resumed_from = self._existing()
        since_ms = int(req.since.value // 1_000_000)
        have = 0
        if existing is not None and len(existing):
            have = len(existing)
            last_ms = int(existing.index[-1].value // 1_000_000)
            since_ms = max(since_ms, last_ms + self.step_ms)
        # Only closed candles: the last one that ends by now (or by --until).
        end_ms = self._now_ms() // self.step_ms * self.step_ms
        if req.until is not None:
            end_ms = min(end_ms, int(req.until.value // 1_000_000))
        total = max((end_ms - since_ms) // self.step_ms, 0)
        bar = _progress(total, req.progress)
        header = existing is None
        buffer: list[list[float]] = []
        new = 0
        last_seen = since_ms - self.step_ms
        cursor = since_ms
        try:
            while cursor < end_ms:
                try:
                    page = self._call(
                        self.client.fetch_ohlcv,
                        symbol,
                        req.timeframe,
                        since=cursor,
                        limit=req.page_limit,
                    )
                except ccxt.BaseError as exc:
                    if buffer:  # keep every good page: the next run resumes after it
                        _append(self.part, buffer, header)
                        header, buffer = False, []
                    raise DownloadError(
                        f"{req.exchange} {symbol} {req.timeframe}: {_short(exc)}"
                        f" (at {_iso(cursor)}; {have + new:,} bars kept in {self.part},"
                        " re-run to resume)"
                    ) from exc
                rows = [
                    [float(x) for x in r[:6]]
                    for r in page
                    if last_seen < r[0] and r[0] + self.step_ms <= end_ms
                ]
                if not rows:
                    break
                self._check_page(rows, cursor)
                buffer += rows
                new += len(rows)
                last_seen = int(rows[-1][0])
                cursor = last_seen + self.step_ms
                if bar is not None:
                    bar.update(len(rows))
                if len(buffer) >= FLUSH_ROWS:
                    _append(self.part, buffer, header)
                    header, buffer = False, []
            if buffer or header:
                if header and not buffer:
                    raise DownloadError(
                        f"{req.exchange} {symbol} {req.timeframe}: no closed candles between"
                        f" {_iso(since_ms)} and {_iso(end_ms)}"
                    )
                _append(self.part, buffer, header)
        finally:
            if bar is not None:
                bar.close()
        return self._finish(have, new, resumed_from)

    def _check_page(self, rows: list[list[float]], cursor: int) -> None:
        """The loader's rules on every page, so bad data stops the download where it is."""
        try:
            validate_bars(_frame(rows), f"{self.request.exchange} page from {_iso(cursor)}",
                          self.request.timeframe)  # fmt: skip
        except DataError as exc:
            raise DownloadError(f"the exchange sent bad candles: {exc}") from exc

    def _finish(self, have: int, new: int, resumed_from: str | None) -> DownloadResult:
        req = self.request
        try:
            bars = load_bars(self.part, req.timeframe)
        except DataError as exc:
            raise DownloadError(f"downloaded file does not validate: {exc}") from exc
        self.part.replace(req.out)
        return DownloadResult(
            out=req.out,
            bars=len(bars),
            new_bars=new,
            first=bars.index[0] if len(bars) else None,
            last=bars.index[-1] if len(bars) else None,
            resumed_from=resumed_from if have else None,
        )


def _progress(total: int, show: bool | None) -> Any:
    from tqdm import tqdm

    disable = not sys.stderr.isatty() if show is None else not show
    return tqdm(total=total, unit="bar", desc="download", disable=disable, mininterval=0.5)


def _iso(ms: int) -> str:
    return pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"
