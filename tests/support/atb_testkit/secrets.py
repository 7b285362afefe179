"""Generated secrets for the property tests at every boundary (sinks, rows, files, payloads).

`registered`: secrets the run's redactor is told about (env vars, config values), printable
ASCII; no "${", which OmegaConf reads as an interpolation, never a literal value.
`unregistered`: token-like values no one registered: the built-in patterns must catch them.
"""

from __future__ import annotations

import json

from hypothesis import strategies as st

REDACTED = "[REDACTED]"

_PRINTABLE = st.characters(min_codepoint=33, max_codepoint=126)
registered = st.text(_PRINTABLE, min_size=10, max_size=40).filter(
    lambda s: any(c.isalpha() for c in s) and any(c.isdigit() for c in s) and "${" not in s
)
unregistered = st.text(
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"),
    min_size=12,
    max_size=40,
).filter(lambda s: any(c.isdigit() for c in s) and any(c.isalpha() for c in s))


def leaks(text: str, secret: str) -> bool:
    """The secret is in `text` as written, JSON-escaped, or escaped twice."""
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(json.dumps(secret)[1:-1])[1:-1]}
    return any(f in text for f in forms)
