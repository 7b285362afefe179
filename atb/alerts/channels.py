"""Alert channels: where notifications go.

A channel is a class named by `_target_` in `alerts.channels` with its own settings
model. `send()` does one attempt and raises `DeliveryError` on failure; retries, backoff,
timeouts and the circuit breaker are the worker's job (`atb.alerts.delivery`), the same for
every channel, so a new channel is a dozen lines.

* `LogChannel` (always on): the alert as one log line at the alert's severity.
* `WebhookChannel`: JSON POST of `Notification.payload()` (`text` for Slack/Discord-style
  receivers, `alert` for machines) to `url` (`ALERT_WEBHOOK_URL`), with optional extra
  headers for auth. URL and header values are secrets: never logged, never in /status.
"""

from __future__ import annotations

import http.client
import json
import sys
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator

from atb.alerts.config import ChannelConfig
from atb.alerts.http import BoundedRequest, DeadlineExceeded
from atb.alerts.model import LEVEL_NO, SEVERITY_LEVEL, Notification
from atb.config.base import field_error
from atb.logging import core
from atb.logging.redaction import get_redactor
from atb.runtime.context import RunContext


class DeliveryError(Exception):
    """One failed attempt; `retryable` says whether another attempt could succeed."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Channel(ABC):
    config_model: ClassVar[type[ChannelConfig]] = ChannelConfig
    default_name: ClassVar[str] = "channel"
    #: True when it reaches someone outside the process (what `alert_sent` means).
    external: ClassVar[bool] = True
    #: what `atb alerts test` suggests when the entry has nothing to send to
    setup_hint: ClassVar[str] = ""

    def __init__(self, config: ChannelConfig, ctx: RunContext) -> None:
        self.config = config
        self.ctx = ctx
        self.name = config.display_name()

    @property
    def configured(self) -> bool:
        """False when the entry is present but has nothing to send to (no URL set)."""
        return True

    @abstractmethod
    def send(self, notification: Notification, timeout: float) -> None:
        """Each subclass implements this."""

    def describe(self) -> dict[str, Any]:
        """For /status and `atb alerts test`: nothing secret."""
        return {"kind": type(self).__name__}

    def cancel(self) -> None:  # noqa: B027 - optional hook, most channels have nothing to cut
        """Cut an attempt in flight short (shutdown budget spent); default: nothing to cut."""

    @classmethod
    def build(cls, config: ChannelConfig, ctx: RunContext) -> list[Channel]:
        """The channels one config entry stands for (Apprise: one per URL)."""
        return [cls(config, ctx)]

    def secrets(self) -> list[str]:
        return []

    def redact(self, text: str) -> str:
        from atb.logging.redaction import redact_text

        text = redact_text(text, [*self.secrets(), *self.ctx.secrets])
        return get_redactor().redact_text(text)


# -- log --------------------------------------------------------------------------------


class LogChannelConfig(ChannelConfig):
    target: str = Field("atb.alerts.channels.LogChannel", alias="_target_", min_length=1)
    retries: int = Field(0, ge=0)
    logger: str = Field("atb.alerts", description="logger name the alert lines carry")


class LogChannel(Channel):
    """The alert as a log line on every log sink (console, JSON, files).

    Written to the sinks only, not to the record listeners: the journal records each
    alert once, from the router, with the delivery outcome (`alert_sent`/`alert_method`)
    that a log record cannot carry.
    """

    config_model = LogChannelConfig
    default_name = "log"
    external = False
    config: LogChannelConfig

    def send(self, notification: Notification, timeout: float) -> None:
        level = SEVERITY_LEVEL.get(notification.severity, "WARNING")
        if notification.status != "firing":
            level = "INFO" if notification.status == "resolved" else "WARNING"
        fields = {
            "alert_rule": notification.rule,
            "alert_status": notification.status,
            "alert_id": notification.id,
            "severity": notification.severity,
            "count": notification.count,
        }
        if notification.key:
            fields["alert_key"] = notification.key
        write_log_line(self.config.logger, level, notification.text(), fields)


def write_log_line(logger: str, level: str, message: str, fields: dict[str, Any]) -> None:
    """One redacted record to every log sink, bypassing the record listeners."""
    levelno = LEVEL_NO.get(level, 30)
    try:
        red = core._redactor or get_redactor()
        record = {
            "timestamp": datetime.now(UTC),
            "level": level,
            "levelno": levelno,
            "logger": logger,
            "function": None,
            "line": None,
            "message": red.redact_text(message),
            "event_type": "alert_event",
            "event": f"alert_{fields.get('alert_status', 'firing')}",
            "context": core._redacted_context(red),
            "fields": red.redact_mapping(fields),
            "exception": None,
        }
        delivered = False
        for sink in core._sinks:
            if sink.failed or levelno < sink.levelno:
                continue
            sink.put(record, True)
            delivered = True
        if delivered:
            return
    except AttributeError:  # pragma: no cover - logging internals changed
        pass
    # No sink takes it (logging not configured, or every sink failed): stderr, as a last resort.
    stream = sys.__stderr__
    if stream is not None:
        stream.write(f"{level} {logger}: {get_redactor().redact_text(message)}\n")
        stream.flush()


# -- webhook ----------------------------------------------------------------------------


class WebhookChannelConfig(ChannelConfig):
    target: str = Field("atb.alerts.channels.WebhookChannel", alias="_target_", min_length=1)
    url: SecretStr | None = Field(
        None, description="http(s) URL (ALERT_WEBHOOK_URL); null: channel not configured"
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="extra request headers, e.g. Authorization"
    )
    method: Literal["POST", "PUT"] = "POST"
    verify_tls: bool = True

    @model_validator(mode="after")
    def _check_url(self) -> WebhookChannelConfig:
        # Checked here rather than with a field validator so the (secret) URL is never
        # echoed back in the error message.
        if self.url is not None:
            raw = self.url.get_secret_value().strip()
            if not raw:
                self.url = None
            elif urlsplit(raw).scheme not in ("http", "https") or not urlsplit(raw).netloc:
                raise field_error("url", "must be an http:// or https:// URL")
        return self


class WebhookChannel(Channel):
    config_model = WebhookChannelConfig
    default_name = "webhook"
    setup_hint = "set ALERT_WEBHOOK_URL or pass --webhook-url"
    config: WebhookChannelConfig

    def __init__(self, config: WebhookChannelConfig, ctx: RunContext) -> None:
        super().__init__(config, ctx)
        self._inflight: BoundedRequest | None = None

    @property
    def configured(self) -> bool:
        return self.config.url is not None

    def secrets(self) -> list[str]:
        found = [v.get_secret_value() for v in self.config.headers.values()]
        if self.config.url is not None:
            url = self.config.url.get_secret_value()
            parts = urlsplit(url)
            # The whole URL, and its path + query: Slack/Discord put the token there.
            found += [url, parts.path, parts.query]
        return [s for s in found if s and s != "/"]

    def target_display(self) -> str:
        if self.config.url is None:
            return "(not configured)"
        parts = urlsplit(self.config.url.get_secret_value())
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}/…"

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "WebhookChannel",
            "target": self.target_display(),
            "headers": sorted(self.config.headers),
        }

    def send(self, notification: Notification, timeout: float) -> None:
        if self.config.url is None:
            raise DeliveryError("no url configured", retryable=False)
        body = json.dumps(notification.payload(), default=str).encode("utf-8")
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "atb-alerts/1",
            **{k: v.get_secret_value() for k, v in self.config.headers.items()},
        }
        request = BoundedRequest(self.config.url.get_secret_value(), timeout,
                                 self.config.verify_tls)  # fmt: skip
        self._inflight = request
        try:
            resp = request.send(self.config.method, body, headers)
        except DeadlineExceeded as exc:
            raise DeliveryError(str(exc)) from None
        except (TimeoutError, OSError, http.client.HTTPException) as exc:
            raise DeliveryError(self.redact(f"{type(exc).__name__}: {exc}")) from None
        finally:
            self._inflight = None
        status = resp.status
        if 300 <= status < 400:
            raise DeliveryError(f"HTTP {status} {resp.reason} (redirects are not followed)",
                                retryable=False)  # fmt: skip
        if not 200 <= status < 300:
            retryable = status >= 500 or status in (408, 425, 429)
            raise DeliveryError(f"HTTP {status} {resp.reason}", retryable)

    def cancel(self) -> None:
        request = self._inflight
        if request is not None:
            request.cancel()
