"""`AppriseChannel`: Telegram, Discord, Slack, email, ntfy, … through Apprise URLs.

One config entry lists any number of Apprise URLs (`urls`, or `ALERT_APPRISE_URLS`:
several separated by spaces, newlines or commas). Each URL becomes its own channel
(`apprise.tgram`, `apprise.mailto`, …) with its own worker, breaker and /status entry, so
a dead Telegram bot neither holds up nor hides the email. Requires the `notify` extra
(`pip install 'atb[notify]'`).

The URLs are credentials (bot tokens, webhook tokens, SMTP passwords): every secret part
of them is registered with the redactor when the channel is built, and what is shown
(`/status`, `atb alerts test`, logs) is Apprise's privacy form without the query.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Any, ClassVar
from urllib.parse import parse_qsl, unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from atb.alerts.channels import Channel, DeliveryError
from atb.alerts.config import ChannelConfig
from atb.alerts.model import Notification
from atb.config.base import field_error
from atb.logging.redaction import get_redactor
from atb.runtime.context import RunContext

INSTALL_HINT = "apprise is not installed: pip install 'atb[notify]'"
# Several URLs in one string: split on whitespace, and on commas that start a new URL
# (a comma inside a URL, e.g. mailto's `to=a@x,b@y`, stays).
_SPLIT = re.compile(r"\s+|,\s*(?=[A-Za-z][A-Za-z0-9+.\-]*://)")
# Query keys whose values are addresses or options, not credentials.
_PLAIN_KEYS = frozenset(
    {
        "to",
        "from",
        "cc",
        "bcc",
        "name",
        "format",
        "overflow",
        "mode",
        "smtp",
        "port",
        "secure",
        "method",
        "priority",
        "image",
        "preview",
        "silent",
        "detect",
        "content",
        "avatar",
        "footer",
        "tts",
        "retry",
        "wait",
        "optional",
        "verify",
        "cto",
        "rto",
    }
)
_SEVERITY_TYPE = {"info": "info", "warning": "warning", "error": "failure", "critical": "failure"}


def split_urls(value: str) -> list[str]:
    return [part.strip() for part in _SPLIT.split(value) if part and part.strip()]


def url_secrets(url: str) -> list[str]:
    """The parts of an Apprise URL that are credentials.

    Apprise puts tokens anywhere: user/password (SMTP), host (`tgram://BOTTOKEN/…`,
    `discord://WEBHOOK_ID/TOKEN`), path segments (Slack's three tokens) or the query
    (`?token=`). Everything but a real host name, an address or an option counts.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return [url]
    found = [url]
    netloc = parts.netloc.rsplit("@", 1)
    if len(netloc) == 2:
        found.append(unquote(netloc[0]))
        found += [unquote(p) for p in netloc[0].split(":")]
    host = netloc[-1]
    hostname = (parts.hostname or "").strip("[]")
    # A DNS name or an IP says where, not who: keep it readable.
    if hostname and not _is_host(hostname):
        found += [unquote(host), hostname]
    found += [unquote(seg) for seg in parts.path.split("/") if len(seg) >= 6]
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        if key.lower() not in _PLAIN_KEYS:
            found.append(value)
    return [s for s in dict.fromkeys(found) if s and len(s) >= 4]


def _is_host(name: str) -> bool:
    """A DNS name with a dot, localhost or an IP address (not a token in the host slot)."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return name == "localhost" or bool(
            re.fullmatch(r"[A-Za-z0-9\-]*[A-Za-z][A-Za-z0-9\-]*(\.[A-Za-z0-9\-]+)+", name)
        )
    return True


def _apprise() -> Any:
    try:
        import apprise
    except ImportError:
        return None
    return apprise


class AppriseChannelConfig(ChannelConfig):
    target: str = Field("atb.alerts.apprise_channel.AppriseChannel", alias="_target_", min_length=1)
    urls: list[SecretStr] = Field(
        default_factory=list,
        description="Apprise URLs (ALERT_APPRISE_URLS: several, separated by spaces or "
        "commas); empty: channel not configured",
    )
    markdown: bool = Field(True, description="send markdown where the service renders it")

    @field_validator("urls", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            return split_urls(value)
        if isinstance(value, list | tuple):
            out: list[Any] = []
            for item in value:
                text = item.get_secret_value() if isinstance(item, SecretStr) else item
                out += split_urls(text) if isinstance(text, str) else [item]
            return out
        return value

    @model_validator(mode="after")
    def _check_urls(self) -> AppriseChannelConfig:
        # The URLs are secrets: the messages name the position and scheme only.
        if not self.urls:
            return self
        apprise = _apprise()
        if apprise is None:
            raise field_error("urls", INSTALL_HINT)
        for i, secret in enumerate(self.urls):
            url = secret.get_secret_value()
            scheme = url.split("://", 1)[0] if "://" in url else ""
            if not scheme:
                raise field_error(f"urls.{i}", "not an Apprise URL (expected scheme://...)")
            if apprise.Apprise.instantiate(url, suppress_exceptions=True) is None:
                raise field_error(
                    f"urls.{i}",
                    f"Apprise cannot use this {scheme}:// URL (unknown service or missing "
                    "parts; see https://github.com/caronc/apprise/wiki)",
                )
        return self


class AppriseChannel(Channel):
    """One Apprise URL; `build()` makes one per URL of the entry."""

    config_model: ClassVar[type[ChannelConfig]] = AppriseChannelConfig
    default_name = "apprise"
    setup_hint = (
        "set ALERT_APPRISE_URLS (tgram://, discord://, slack://, mailto://, …) "
        "or pass --apprise-url"
    )
    config: AppriseChannelConfig

    def __init__(
        self,
        config: AppriseChannelConfig,
        ctx: RunContext,
        index: int | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(config, ctx)
        self.index = index
        if name:
            self.name = name
        self._url = config.urls[index].get_secret_value() if index is not None else None
        self._service: Any = None
        self._display = "(not configured)"
        if self._url is not None:
            get_redactor().add_secrets(self.secrets())
            apprise = _apprise()
            if apprise is not None:
                # "Notifying 1 service(s)" on every delivery is noise; failures stay.
                logging.getLogger("apprise").setLevel(logging.WARNING)
                self._service = apprise.Apprise.instantiate(self._url, suppress_exceptions=True)
            self._display = self._privacy_url()

    @classmethod
    def build(cls, config: ChannelConfig, ctx: RunContext) -> list[Channel]:
        assert isinstance(config, AppriseChannelConfig)
        if not config.urls:
            return [cls(config, ctx)]
        base = config.name or cls.default_name
        schemes = [u.get_secret_value().split("://", 1)[0].lower() for u in config.urls]
        channels: list[Channel] = []
        for i, scheme in enumerate(schemes):
            name = f"{base}.{scheme}"
            if schemes.count(scheme) > 1:
                name += f".{schemes[: i + 1].count(scheme)}"
            channels.append(cls(config, ctx, index=i, name=name))
        return channels

    @property
    def configured(self) -> bool:
        return self._url is not None

    def secrets(self) -> list[str]:
        return url_secrets(self._url) if self._url else []

    def _privacy_url(self) -> str:
        if self._service is None or self._url is None:
            return "(not configured)"
        parts = urlsplit(self._url)
        if parts.hostname and _is_host(parts.hostname) and "@" not in parts.netloc:
            port = parts.netloc.rpartition(":")[2] if ":" in parts.netloc else ""
            if port.isdigit():
                return f"{parts.scheme}://{parts.hostname}:{port}/…"
            if not port:
                return f"{parts.scheme}://{parts.hostname}/…"
        try:
            shown = str(self._service.url(privacy=True)).split("?", 1)[0]
        except Exception:
            shown = self._url.split("://", 1)[0] + "://…"
        return self.redact(shown)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"kind": "AppriseChannel", "target": self._display}
        if self._service is not None:
            info["service"] = str(getattr(self._service, "service_name", "") or "")
        return info

    def send(self, notification: Notification, timeout: float) -> None:
        if self._url is None:
            raise DeliveryError("no url configured", retryable=False)
        apprise = _apprise()
        if apprise is None:
            raise DeliveryError(INSTALL_HINT, retryable=False)
        # A fresh Apprise object per attempt: no state shared between worker threads.
        client = apprise.Apprise()
        if not client.add(self._url):
            raise DeliveryError("Apprise rejected the URL", retryable=False)
        title = self.redact(notification.title())
        if self.config.markdown:
            body, body_format = notification.markdown(), apprise.NotifyFormat.MARKDOWN
        else:
            body, body_format = notification.text(), apprise.NotifyFormat.TEXT
        kind = (
            "success"
            if notification.status == "resolved"
            else _SEVERITY_TYPE.get(notification.severity, "info")
        )
        # `timeout` bounds the whole call (connect + send + read) inside Apprise; its
        # own retries are off: retry and backoff are the worker's, as for every channel.
        result = client.notify(
            body=self.redact(body) or title,
            title=title,
            notify_type=kind,
            body_format=body_format,
            timeout=timeout,
        )
        if bool(result):
            return
        raise DeliveryError(self.redact(_reason(result, timeout)))


def _reason(result: Any, timeout: float) -> str:
    """Apprise's own words for a failure (its WARNING+ log lines), else its status."""
    raw = getattr(result, "status", "")
    status = str(getattr(raw, "name", raw) or "")
    if "TIMEOUT" in status.upper() or status.lower().endswith("timeout"):
        return f"timed out: no answer within the {timeout:g}s total deadline"
    lines: list[str] = []
    try:
        for entry in result.logs():
            if str(getattr(entry, "level", "")).upper() in ("WARNING", "ERROR", "CRITICAL"):
                lines.append(str(entry.message))
    except Exception:
        pass
    for service in _iter(result):
        state = getattr(service, "status", "")
        if "TIMEOUT" in str(getattr(state, "name", state)).upper():
            return f"timed out: no answer within the {timeout:g}s total deadline"
    if lines:
        return "; ".join(dict.fromkeys(lines))[:300]
    return f"Apprise reported {status or 'failure'}"


def _iter(result: Any) -> list[Any]:
    try:
        return list(result)
    except TypeError:
        return []
