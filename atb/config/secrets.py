"""Old import path of the redaction helpers; the one redactor is `atb.logging.redaction`.

Kept so code written against it keeps working: every name here is the redactor's own
function, with its rules (keys, patterns, secret values, URLs) and its replacement text.
"""

from __future__ import annotations

from atb.logging.redaction import (
    DEFAULT_REPLACEMENT as MASK,
)
from atb.logging.redaction import (
    is_secret_key,
    redact_obj,
    redact_override,
    redact_text,
)

__all__ = ["MASK", "is_secret_key", "redact_obj", "redact_override", "redact_text"]
