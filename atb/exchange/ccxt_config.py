"""Settings of the ccxt exchange node (`exchange` in conf/exchange/binance.yaml)."""

from __future__ import annotations

import os
import re
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from atb.config.base import NodeConfig, StrictModel, field_error


class RetrySettings(StrictModel):
    attempts: int = Field(4, ge=0, le=100, description="retries after the first try")
    initial: float = Field(0.5, ge=0, description="seconds before the first retry")
    max: float = Field(30.0, ge=0, description="cap on one wait, seconds")
    factor: float = Field(2.0, ge=1, description="backoff multiplier")
    jitter: float = Field(0.1, ge=0, le=1, description="± fraction of each wait, randomised")
    max_retry_after: float = Field(120.0, ge=0, description="cap on a server's Retry-After")


def env_name(exchange_id: str, what: str) -> str:
    """`binance`, `api_key` -> `BINANCE_API_KEY` (the exchange's own env var names)."""
    return re.sub(r"[^A-Z0-9]", "_", exchange_id.upper()) + "_" + what.upper()


def _ccxt_has(exchange_id: str) -> bool | None:
    """Whether ccxt ships this exchange, by file, without importing ccxt (slow)."""
    spec = find_spec("ccxt")
    if spec is None or not spec.submodule_search_locations:
        return None
    return any((Path(p) / f"{exchange_id}.py").is_file() for p in spec.submodule_search_locations)


class CcxtExchangeConfig(NodeConfig):
    id: str = Field("binance", pattern=r"^[a-z0-9_]+$", description="ccxt exchange id")
    api_key: SecretStr | None = Field(None, description="null: env <ID>_API_KEY")
    api_secret: SecretStr | None = Field(None, description="null: env <ID>_API_SECRET")
    password: SecretStr | None = Field(
        None, description="passphrase (okx, kucoin); null: env <ID>_API_PASSWORD"
    )
    sandbox: bool = Field(False, description="the exchange's testnet (ccxt set_sandbox_mode)")
    base_url: str | None = Field(
        None, description="rebase every REST URL here (a proxy, or the test exchange)"
    )
    timeout: float = Field(10.0, gt=0, description="seconds per HTTP request")
    rate_limit: bool = Field(True, description="ccxt's client-side rate limiter")
    options: dict[str, Any] = Field(default_factory=dict, description="ccxt `options`")
    retry: RetrySettings = Field(default_factory=RetrySettings)
    trading: bool = Field(False, description="places real orders (set by mode=live): keys required")

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^/]+", value):
            raise ValueError("must be an http(s):// URL")
        return value

    @model_validator(mode="after")
    def _resolve(self) -> CcxtExchangeConfig:
        if _ccxt_has(self.id) is False:
            raise field_error("id", f"ccxt has no exchange '{self.id}'")
        # Keys come from the exchange's own env vars unless given explicitly, so
        # `exchange.id=kraken` never sends Binance keys to Kraken.
        for name, var in (
            ("api_key", "API_KEY"),
            ("api_secret", "API_SECRET"),
            ("password", "API_PASSWORD"),
        ):
            if getattr(self, name) is None:
                value = os.environ.get(env_name(self.id, var))
                if value:
                    object.__setattr__(self, name, SecretStr(value))
        if self.trading:
            missing = [
                f"{env_name(self.id, var)}"
                for name, var in (("api_key", "API_KEY"), ("api_secret", "API_SECRET"))
                if not (getattr(self, name) and getattr(self, name).get_secret_value())
            ]
            if missing:
                raise field_error(
                    "api_key",
                    f"live trading needs API keys: set {' and '.join(missing)} "
                    f"(or exchange.api_key / exchange.api_secret)",
                )
        return self
