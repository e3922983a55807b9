"""Canonical JSON and SHA-256: the identity of states, inputs and outputs.

Canonical form: sorted keys, no whitespace, UTF-8, no NaN/Infinity. Two
values hash equal exactly when they are equal as JSON.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from runs.engine.errors import NotJSONError


def _find_non_json(value: Any, path: str = "$", seen: frozenset[int] = frozenset()) -> str | None:
    if isinstance(value, (list, tuple, dict)):
        if id(value) in seen:
            return f"{path} refers to itself (a circular reference)"
        seen = seen | {id(value)}
    if value is None or isinstance(value, (bool, str)):
        return None
    if isinstance(value, int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{path} is {value!r}, which JSON cannot hold"
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found = _find_non_json(item, f"{path}[{i}]", seen)
            if found:
                return found
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{path} has a key {key!r} of type {type(key).__name__}; JSON keys are strings"
            found = _find_non_json(item, f"{path}.{key}", seen)
            if found:
                return found
        return None
    return f"{path} is a {type(value).__name__} ({value!r:.60}), which is not JSON"


def canonical_json(value: Any, *, what: str = "value") -> str:
    """Serialize ``value`` canonically; raise NotJSONError naming the bad path."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        where = _find_non_json(value) or str(exc)
        raise NotJSONError(f"{what} is not JSON: {where}") from None


def sha256_hex(data: str | bytes) -> str:
    if isinstance(data, str):
        data = data.encode()
    return hashlib.sha256(data).hexdigest()


def json_hash(value: Any, *, what: str = "value") -> str:
    return sha256_hex(canonical_json(value, what=what))


def normalize(value: Any, *, what: str = "value") -> tuple[Any, str, int]:
    """Return (the value as JSON would give it back, its hash, its size in bytes).

    Tuples become lists here, so a replayed state compares equal to the stored one.
    """
    normal, digest, size, _ = normalize_text(value, what=what)
    return normal, digest, size


def normalize_text(value: Any, *, what: str = "value") -> tuple[Any, str, int, str]:
    """:func:`normalize` plus the canonical text, for callers that also scan it (secrets)."""
    text = canonical_json(value, what=what)
    try:
        data = text.encode()
    except UnicodeEncodeError as exc:  # a lone surrogate such as "\ud800" has no UTF-8 form
        raise NotJSONError(f"{what} holds text that is not valid Unicode: {exc.reason}") from None
    return json.loads(text), hashlib.sha256(data).hexdigest(), len(data), text
