"""Config text that Hydra prints (`--cfg`, `--info`) passes through the run's redactor."""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from collections.abc import Iterator
from typing import Any

import yaml

from atb.logging.redaction import (
    DEFAULT_SECRET_ENV,
    get_redactor,
    override_secrets,
    secrets_from_env,
)


def redact_yaml_text(text: str) -> str:
    """Redact a YAML document as structure: values under sensitive keys at any depth, and
    every string by value and pattern (URL passwords, webhook URLs). Not again as text: a
    `null` under a secret key would turn into YAML that means something else. A leading
    `# @package x` line is kept; text that is not a YAML mapping is redacted as text."""
    red = get_redactor()
    header = ""
    body = text
    if body.startswith("# @package"):
        header, _, body = body.partition("\n")
        header += "\n"
    try:
        data = yaml.safe_load(body)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, dict):
        return red.redact_text(text)
    dumped = yaml.safe_dump(red.redact(data), sort_keys=False, allow_unicode=True, width=1000)
    return header + dumped


@contextlib.contextmanager
def redacting_stdout(args: list[str], *, structured: bool) -> Iterator[None]:
    """Capture what the block prints (stdout, and Hydra's own log lines), write it redacted."""
    red = get_redactor()
    red.add_secrets(override_secrets(args))
    red.add_secrets(secrets_from_env(DEFAULT_SECRET_ENV))
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    hydra_log = logging.getLogger("hydra")
    hydra_log.addHandler(handler)
    try:
        with contextlib.redirect_stdout(buffer):
            yield
    finally:
        hydra_log.removeHandler(handler)
        text = buffer.getvalue()
        out = redact_yaml_text(text) if structured else red.redact_text(text)
        sys.stdout.write(out)
        sys.stdout.flush()


def redact_printed_config(args: list[str]) -> None:
    """`--cfg job|hydra|all` (with or without `--resolve`) and `--info` print through the
    redactor: command-line keys, URL passwords and webhook URLs never reach the terminal."""
    from hydra._internal.hydra import Hydra

    if getattr(Hydra.show_cfg, "_atb_redacted", False):
        return
    show_cfg, show_info = Hydra.show_cfg, Hydra.show_info

    def redacted_cfg(self: Hydra, *a: Any, **kw: Any) -> None:
        with redacting_stdout(args, structured=True):
            show_cfg(self, *a, **kw)

    def redacted_info(self: Hydra, *a: Any, **kw: Any) -> None:
        with redacting_stdout(args, structured=False):
            show_info(self, *a, **kw)

    redacted_cfg._atb_redacted = True  # type: ignore[attr-defined]
    Hydra.show_cfg = redacted_cfg  # type: ignore[method-assign]
    Hydra.show_info = redacted_info  # type: ignore[method-assign]
