"""Keep secrets out of the run's own outputs (.hydra copies, run records, health payloads).

The logging package's Redactor (`atb.logging.redaction`) does the full job for log
records. This module is smaller and independent of it: values are masked as `***` (not
`[REDACTED]`), any non-empty secret value is masked (no minimum length), a key is
secret when its name merely contains one of the words below, and there are no
key=value / Bearer text patterns. Callers that want both apply both (alerts.channels).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

MASK = "***"
SECRET_KEY = re.compile(
    r"(api[_-]?key|apikey|secret|token|password|passwd|passphrase|private[_-]?key|"
    r"authorization|signature|x-mbx-apikey|credential)",
    re.IGNORECASE,
)
URL_CREDENTIALS = re.compile(
    r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@"
)


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY.search(key))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    text = URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    # Longest first, so a secret that contains another is masked whole.
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def redact_obj(obj: Any, secrets: Iterable[str] = ()) -> Any:
    secrets = tuple(secrets)
    if isinstance(obj, dict):
        return {
            k: (MASK if is_secret_key(str(k)) and v not in (None, "") else redact_obj(v, secrets))
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [redact_obj(v, secrets) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj, secrets)
    return obj


def redact_override(override: str, secrets: Iterable[str] = ()) -> str:
    """`exchange.api_key=abc` -> `exchange.api_key=***`; other values by value and URL."""
    key, sep, value = override.partition("=")
    if sep and is_secret_key(key.rsplit(".", 1)[-1]) and value not in ("", "null"):
        return f"{key}={MASK}"
    return redact_text(override, secrets)
