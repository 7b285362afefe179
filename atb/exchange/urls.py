"""Point a ccxt client somewhere else: every REST base URL rebased onto one host.

Used by `exchange.base_url` (a proxy, a mirror, or the test exchange) and by the health
server's reachability check, so both rebase the same way.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def rebase_api_urls(client: Any, base_url: str) -> None:
    """Keep each API family's path, replace scheme+host+port with `base_url`.

    Every family (spot, futures, sapi, ...) is rebased, not just the one atb uses, so a
    stray call can never reach the real exchange while a test thinks it is offline.
    """
    base = base_url.rstrip("/")
    api = client.urls.get("api")
    if isinstance(api, str):
        rebased: Any = base + urlsplit(api).path
    else:
        rebased = {
            name: base + urlsplit(url).path if isinstance(url, str) else url
            for name, url in (api or {}).items()
        }
    client.urls = {**client.urls, "api": rebased}
    fold_binance_spot_errors(client)


def fold_binance_spot_errors(client: Any) -> None:
    """ccxt picks Binance's spot error table by URL prefix (https://api.binance.com/),
    which a rebased URL never matches: fold it into the generic table, same precedence,
    so e.g. "insufficient balance" still maps to InsufficientFunds."""
    exceptions = getattr(client, "exceptions", None)
    if not isinstance(exceptions, dict):
        return
    spot_exact = exceptions.get("spot", {}).get("exact", {})
    if spot_exact:
        client.exceptions = {**exceptions, "exact": {**exceptions.get("exact", {}), **spot_exact}}
