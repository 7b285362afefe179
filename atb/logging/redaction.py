"""The one secret redactor: every place where text leaves the process or is stored uses it.

Log sinks, DB text columns (a cursor hook in `atb.db.node`), the files a run writes
(`.hydra/`, `multirun.yaml`, summaries, spill files, exports), `--cfg` printing, HTTP
payloads, alert bodies and dashboards all call the installed redactor (`get_redactor()`,
or the `redact_text` / `redact_obj` / `redact_override` helpers below). Its rules come from
the `redaction` config group; the defaults are the constants below.

Three kinds of rule, applied in this order:

1. by value: the actual secrets of this run (config SecretStr values, URL passwords,
   selected env vars) and their escaped spellings (repr, JSON, URL-quoted), wherever
   they occur — messages, fields, exception text, tracebacks;
2. by pattern: `key=value`, `"key": "value"`, `Authorization: Bearer …`, credentials in
   URLs, signed query strings, plus user regexes;
3. by key name, for structured data: the value under a sensitive key is replaced
   whatever it is (`redact()` walks nested dicts and lists).

Most strings that go through here are clean and repeat (event names, symbols, constant
messages), so the result for clean strings is cached: the hot path pays one dict lookup.
"""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any, Protocol
from urllib.parse import quote, quote_plus, unquote, urlsplit
from uuid import UUID


class UserPattern(Protocol):
    """A user regex rule (`redaction.patterns[]`, atb.config.redaction.PatternRule)."""

    @property
    def regex(self) -> str: ...
    @property
    def group(self) -> int: ...
    @property
    def ignore_case(self) -> bool: ...


# Key names whose values are always replaced. Matching ignores case and the separators
# `_`, `-`, `.` and space, and also catches a prefixed name (`binance_api_key`,
# `db_password`) because the comparison is on the end of the normalised name.
# `redaction.keys` in conf/redaction/default.yaml repeats them so `--cfg job` shows them.
DEFAULT_KEYS: tuple[str, ...] = (
    "api_key",
    "apiKey",
    "api_secret",
    "secret",
    "secret_key",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "auth_token",
    "password",
    "passwd",
    "passphrase",
    "private_key",
    "authorization",
    "signature",
    "X-MBX-APIKEY",
    "cookie",
    "set-cookie",
    "credentials",
    "webhook_url",
)

# Environment variables whose values are secrets wherever they show up (a key read from
# the environment may be logged before any config model has seen it). A URL's password
# is the secret; a URL without one (a webhook) is a secret as a whole.
DEFAULT_SECRET_ENV: tuple[str, ...] = (
    "BINANCE_API_KEY",
    "BINANCE_API_SECRET",
    "BINANCE_SECRET",
    "EXCHANGE_API_KEY",
    "EXCHANGE_API_SECRET",
    "EXCHANGE_PASSPHRASE",
    "DATABASE_URL",
    "ATB_DB_URL",
    "ALERT_WEBHOOK_URL",
    "SLACK_WEBHOOK_URL",
    "TELEGRAM_BOT_TOKEN",
    "DISCORD_WEBHOOK_URL",
    "ATB_API_TOKEN",
    "ATB_DASHBOARD_PASSWORD",
    "ATB_DASHBOARD_COOKIE_SECRET",
    "ALERT_APPRISE_URLS",
)

BUILTIN_KEYS: tuple[str, ...] = DEFAULT_KEYS
BUILTIN_SECRET_ENV: tuple[str, ...] = DEFAULT_SECRET_ENV
DEFAULT_REPLACEMENT = "[REDACTED]"

_NON_ALNUM = re.compile(r"[^a-z0-9]")
_CACHE_LIMIT = 8192
# Types that are written as they are; anything else is turned into (redacted) text
# because its str() could carry a secret past the JSON encoder.
_PLAIN = (bool, int, float, type(None), datetime, date, UUID)
_SCALARS = frozenset({int, float, bool, type(None)})
_MASKED = frozenset({"***"})
# Unquoted words that say "no value" (JSON, YAML, Python reprs).
_UNSET = frozenset({"null", "None", "none", "NULL", "~", "true", "false", "True", "False"})


def normalize_key(key: str) -> str:
    return _NON_ALNUM.sub("", key.lower())


def _key_regex(key: str) -> str:
    """`api_key` → `api[_\\-. ]?key`: spelled with any separator or none, any case."""
    parts = [re.escape(p) for p in re.split(r"[_\-. ]+", key) if p]
    # camelCase names (`apiKey`) are split too, so `api_key` / `API-KEY` match them.
    split: list[str] = []
    for part in parts:
        split += [p for p in re.split(r"(?<=[a-z])(?=[A-Z])", part) if p]
    return r"[_\-. ]?".join(split)


class Redactor:
    """Replaces secrets in text and structured data. Thread-safe; cheap for clean input."""

    def __init__(
        self,
        keys: Iterable[str] = BUILTIN_KEYS,
        *,
        secrets: Iterable[str] = (),
        patterns: Iterable[UserPattern] = (),
        builtin_patterns: bool = True,
        replacement: str = DEFAULT_REPLACEMENT,
        min_secret_length: int = 6,
    ) -> None:
        self.replacement = replacement
        self.min_secret_length = min_secret_length
        self.keys: tuple[str, ...] = tuple(dict.fromkeys(keys))
        self._norm_keys = frozenset(normalize_key(k) for k in self.keys)
        self._suffixes = tuple(k for k in self._norm_keys if len(k) >= 5)
        self._key_cache: dict[str, bool] = {}
        self._clean: dict[str, None] = {}
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._secret_re: re.Pattern[str] | None = None
        self._user_patterns = [
            (re.compile(p.regex, re.IGNORECASE if p.ignore_case else 0), p.group) for p in patterns
        ]
        self._builtin = builtin_patterns
        self._build_patterns()
        self.add_secrets(secrets)

    def __getstate__(self) -> dict[str, Any]:
        # The health server process gets the run's redactor by pickle; locks do not travel.
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # -- construction ---------------------------------------------------------------

    def _build_patterns(self) -> None:
        names = "|".join(sorted((_key_regex(k) for k in self.keys), key=len, reverse=True))
        # key=value, key: value, "key": "value", 'key': 'value'; the value keeps its
        # quotes so JSON or repr text inside a message stays well-formed.
        self._kv = re.compile(
            # The separator stays on its line: `token:` opening a nested YAML block is not
            # a value, and the next line's first word must not be taken for one.
            r"(?P<key>(?:" + names + r"))(?![A-Za-z0-9])(?P<kq>[\"']?)(?P<sep>[ \t]*[=:][ \t]*)"
            # An already-masked value is matched whole, so redacting twice changes nothing.
            r"(?P<val>" + re.escape(self.replacement) + r"|\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
            r"|(?:(?:Bearer|Basic|Token|Digest)\s+)?[^\s\"',;&}\])]+)",
            re.IGNORECASE,
        )
        self._bearer = re.compile(
            r"\b(?P<scheme>Bearer|Basic|Token)\s+(?P<val>[A-Za-z0-9\-._~+/]{8,}=*)", re.IGNORECASE
        )
        self._url = re.compile(
            r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s\"']*:)(?P<val>[^@/\s\"']+)(?=@)"
        )
        # Webhook URLs whose path is the credential (no user:password@ to find).
        self._webhook = re.compile(
            r"(?P<head>\bhttps?://(?:hooks\.slack\.com/(?:services|workflows|triggers)/"
            r"|(?:[\w-]+\.)?discord(?:app)?\.com/api/webhooks/\d+/"
            r"|api\.telegram\.org/(?:file/)?bot"
            r"|[\w.-]*webhook\.office\.com/webhookb2/"
            r"|chat\.googleapis\.com/v1/spaces/[^/\s]+/messages\?))"
            r"(?P<val>[^\s\"'<>]+)",
            re.IGNORECASE,
        )
        # Cheap gates: a key=value / URL match needs '=' or ':' and the last word of a key
        # name; a Bearer token needs a space. Text failing the gates skips the regexes.
        fragments: set[str] = set()
        for key in self.keys:
            parts = [p for p in re.split(r"[_\-. ]+|(?<=[a-z])(?=[A-Z])", key) if p]
            if parts:
                fragments.add(parts[-1].lower())
        self._fragments = tuple(
            sorted(f for f in fragments if not any(o != f and o in f for o in fragments))
        )

    def add_secrets(self, values: Iterable[str]) -> None:
        """Redact these exact values (and their escaped spellings) from now on."""
        added = False
        with self._lock:
            for value in values:
                if not isinstance(value, str) or len(value) < self.min_secret_length:
                    continue
                for variant in _spellings(value):
                    if len(variant) >= self.min_secret_length and variant not in self._secrets:
                        self._secrets.add(variant)
                        added = True
            if added:
                ordered = sorted(self._secrets, key=len, reverse=True)
                self._secret_re = re.compile("|".join(re.escape(s) for s in ordered))
                self._secret_list = tuple(ordered)
                self._clean = {}

    @property
    def secret_count(self) -> int:
        return len(self._secrets)

    # -- text -------------------------------------------------------------------------

    def redact_text(self, text: str) -> str:
        """`text` with every secret replaced; returns the same object when it is clean."""
        if text in self._clean:
            return text
        out = text
        secret_re = self._secret_re
        if secret_re is not None and secret_re.search(out):
            out = secret_re.sub(self.replacement, out)
        if self._builtin:
            has_sep = "=" in out or ":" in out
            has_space = " " in out
            if has_sep or has_space:
                lowered = out.lower()
                if has_sep:
                    if "://" in out:
                        out = self._url.sub(self._sub_val, out)
                        out = self._webhook.sub(self._sub_val, out)
                    if any(f in lowered for f in self._fragments):
                        out = self._kv.sub(self._sub_kv, out)
                if has_space and ("bearer" in lowered or "basic" in lowered or "token" in lowered):
                    out = self._bearer.sub(self._sub_bearer, out)
        for regex, group in self._user_patterns:
            out = regex.sub(functools.partial(self._sub_group, group=group), out)
        if out is text or out == text:
            if len(self._clean) >= _CACHE_LIMIT:
                self._clean = {}
            self._clean[text] = None
            return text
        return out

    def _sub_val(self, m: re.Match[str]) -> str:
        if m.group("val") in _MASKED:
            return m.group(0)  # already masked (SQLAlchemy shows a URL's password as ***)
        return m.group("head") + self.replacement

    def _sub_bearer(self, m: re.Match[str]) -> str:
        return f"{m.group('scheme')} {self.replacement}"

    def _sub_kv(self, m: re.Match[str]) -> str:
        val = m.group("val")
        if val == self.replacement or val.strip("\"'") == self.replacement:
            return m.group(0)
        if val in _UNSET:
            # `"api_key": null` is no secret, and replacing it would break the JSON/YAML
            return m.group(0)
        if len(val) >= 2 and val[0] in "\"'" and val[-1] == val[0]:
            new = val[0] + self.replacement + val[0]
        else:
            new = self.replacement
        return m.group("key") + m.group("kq") + m.group("sep") + new

    def _sub_group(self, m: re.Match[str], group: int) -> str:
        whole = m.group(0)
        if group == 0 or m.group(group) is None:
            return self.replacement
        start, end = m.span(group)
        base = m.start(0)
        return whole[: start - base] + self.replacement + whole[end - base :]

    # -- structured data ----------------------------------------------------------------

    def is_sensitive_key(self, key: str) -> bool:
        try:
            return self._key_cache[key]
        except KeyError:
            pass
        norm = normalize_key(key)
        found = norm in self._norm_keys or norm.endswith(self._suffixes)
        if len(self._key_cache) < _CACHE_LIMIT:
            self._key_cache[key] = found
        return found

    def redact(self, obj: Any) -> Any:
        """A redacted copy: dicts/lists/tuples recurse, str is redacted, values under a
        sensitive key are replaced, plain scalars stay, other objects become redacted
        text (their str() could hold a secret). Unchanged input is returned as is."""
        if isinstance(obj, str):
            return self.redact_text(obj)
        if isinstance(obj, _PLAIN):
            return obj
        if isinstance(obj, Mapping):
            return self.redact_mapping(obj)
        if isinstance(obj, list | tuple | set | frozenset):
            return [self.redact(v) for v in obj]
        if hasattr(obj, "get_secret_value"):  # pydantic SecretStr/SecretBytes
            return self.replacement
        if hasattr(obj, "model_dump"):
            return self.redact(obj.model_dump(mode="json"))
        return self.redact_text(str(obj))

    def redact_text_values(self, obj: Any) -> Any:
        """Every str inside dicts/lists redacted, nothing else touched: for rows whose keys
        are column names (a `session_key` column is data, not a secret) and whose numbers
        and times must keep their types. Unchanged input is returned as is."""
        if isinstance(obj, str):  # numpy's str_ too
            return obj if obj in self._clean else self.redact_text(str(obj))
        if isinstance(obj, dict):
            return {k: self.redact_text_values(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.redact_text_values(v) for v in obj]
        return obj

    def redact_mapping(self, data: Mapping[Any, Any]) -> dict[Any, Any]:
        # hot path (every event's fields): caches read inline, scalars by exact class
        out: dict[Any, Any] = {}
        key_cache = self._key_cache
        clean = self._clean
        for key, value in data.items():
            sensitive = key_cache.get(key)
            if sensitive is None:
                sensitive = isinstance(key, str) and self.is_sensitive_key(key)
            if sensitive and value is not None:
                out[key] = self.replacement
                continue
            cls = value.__class__
            if cls is str:
                out[key] = value if value in clean else self.redact_text(value)
            elif cls in _SCALARS:
                out[key] = value
            else:
                out[key] = self.redact(value)
        return out


def _spellings(secret: str) -> set[str]:
    """The forms a secret takes once it has been printed, quoted or put in a URL."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), quote(secret)}
    forms.add(repr(secret)[1:-1])
    forms.add(json.dumps(secret)[1:-1])
    forms.add(json.dumps(secret, ensure_ascii=False)[1:-1])
    return forms


def secrets_from_env(names: Iterable[str], environ: Mapping[str, str] | None = None) -> set[str]:
    """Values of the named env vars (for URLs: the password part)."""
    env = os.environ if environ is None else environ
    found: set[str] = set()
    for name in names:
        value = env.get(name)
        if not value:
            continue
        if "://" in value:
            try:
                password = urlsplit(value).password
            except ValueError:
                password = None
            if password:
                found.add(unquote(password))
            else:
                found |= url_token_parts(value)
            continue
        found.add(value)
    return found


def url_token_parts(url: str) -> set[str]:
    """A URL that is itself the credential (a webhook): the URL and its path/query part.

    Both are registered so the token is masked wherever it is printed, whether the URL is
    shown whole or cut down to its path (`/services/T0/B0/XYZ`).
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return {url}
    tail = parts.path + (f"?{parts.query}" if parts.query else "")
    found = {url}
    if len(tail.strip("/")) >= 6:
        found.add(tail)
    return found


_installed: Redactor | None = None
_install_lock = threading.Lock()


def get_redactor() -> Redactor:
    """The process-wide redactor (built-in rules + secret env vars until a run installs one)."""
    global _installed
    current = _installed
    if current is None:
        with _install_lock:
            if _installed is None:
                _installed = Redactor(secrets=secrets_from_env(BUILTIN_SECRET_ENV))
            current = _installed
    return current


def set_redactor(redactor: Redactor) -> None:
    global _installed
    _installed = redactor


# -- boundary helpers: one call per place where text leaves the process or is stored ------


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` through the run's redactor; `secrets` are registered for the rest of the run."""
    red = get_redactor()
    if secrets:
        red.add_secrets(secrets)
    return red.redact_text(text)


def redact_obj(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """A redacted copy of structured data (values under sensitive keys replaced)."""
    red = get_redactor()
    if secrets:
        red.add_secrets(secrets)
    return red.redact(obj)


def is_secret_key(key: str) -> bool:
    return get_redactor().is_sensitive_key(key)


def redact_override(override: str, secrets: Iterable[str] = ()) -> str:
    """`exchange.api_key=abc` -> `exchange.api_key=[REDACTED]`; others by value/pattern."""
    red = get_redactor()
    if secrets:
        red.add_secrets(secrets)
    key, sep, value = override.partition("=")
    name = key.lstrip("+~").rsplit(".", 1)[-1]
    if sep and red.is_sensitive_key(name) and value not in ("", "null"):
        return f"{key}={red.replacement}"
    return red.redact_text(override)


def override_secrets(overrides: Iterable[str]) -> set[str]:
    """Values given on the command line for sensitive keys (`exchange.api_key=...`)."""
    red = get_redactor()
    found: set[str] = set()
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and red.is_sensitive_key(key.lstrip("+~").rsplit(".", 1)[-1]):
            value = value.strip("'\"")
            if value and value != "null":
                found.add(value)
        elif sep and "://" in value:
            found |= _url_password(value)
    return found


def _url_password(value: str) -> set[str]:
    try:
        password = urlsplit(value.strip("'\"")).password
    except ValueError:
        return set()
    return {unquote(password)} if password else set()
