"""Secrets never reach a checkpoint, a log line or a page.

Values under keys that name a secret are replaced by a marker. The marker is
stable, so a request hash over the redacted form still detects a changed
request (the non-secret parts) on replay.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"
SECRET_KEY_PATTERN = re.compile(
    r"(pass(word|wd)?|secret|token|api[-_]?key|(^|[-_])key$|authorization|cookie|credential|session)",
    re.IGNORECASE,
)


def is_secret_key(key: str) -> bool:
    return bool(SECRET_KEY_PATTERN.search(key))


def redact(value: Any) -> Any:
    """A copy of ``value`` with secret-named fields (at any depth) replaced."""
    if isinstance(value, dict):
        return {k: (REDACTED if isinstance(k, str) and is_secret_key(k) else redact(v)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value
