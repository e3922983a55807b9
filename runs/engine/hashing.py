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


# The deepest nesting a stored value may have. Python reads JSON back recursively (the
# decoder, deepcopy, diffs, redaction, templates): far below the interpreter's limit of
# about 1,000 frames, so every reader can handle what was stored.
MAX_JSON_DEPTH = 100
_ALL_BUT_QUOTES_AND_BRACKETS = bytes(c for c in range(256) if c not in b'[]{}"')
_SQUARE = bytes.maketrans(b"{}", b"[]")


def too_deep(depth: int) -> str:
    return f"is nested {depth} levels deep; at most {MAX_JSON_DEPTH} levels are accepted"


def json_depth(value: Any) -> int:
    """How deeply ``value`` nests lists and objects (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            deepest = max(deepest, depth + 1)
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, (list, tuple)):
            deepest = max(deepest, depth + 1)
            stack.extend((v, depth + 1) for v in item)
    return deepest


def depth_over_limit(data: bytes) -> int:
    """The nesting depth of canonical JSON ``data`` if it is over MAX_JSON_DEPTH, else 0.

    At C speed, because it runs on every state the engine stores: with at most
    MAX_JSON_DEPTH brackets it cannot be too deep (two counts); otherwise the
    strings are cut out and each pass of ``replace`` removes one level of empty
    brackets (0.7 ms for a 90 KB state against 5 ms to serialize it).
    """
    if data.count(b"[") + data.count(b"{") <= MAX_JSON_DEPTH:
        return 0
    shape = data.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _ALL_BUT_QUOTES_AND_BRACKETS)
    shape = b"".join(shape.split(b'"')[::2]).translate(_SQUARE)
    depth = 0
    while shape and depth <= MAX_JSON_DEPTH:
        depth += 1
        shape = shape.replace(b"[]", b"")
    return depth if depth > MAX_JSON_DEPTH else 0


def canonical_json(value: Any, *, what: str = "value") -> str:
    """Serialize ``value`` canonically; raise NotJSONError naming the bad path."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except RecursionError:
        raise NotJSONError(f"{what} {too_deep(json_depth(value))}") from None
    except (TypeError, ValueError) as exc:
        try:
            where = _find_non_json(value) or str(exc)
        except RecursionError:
            where = str(exc)
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
    if depth_over_limit(data):
        raise NotJSONError(f"{what} {too_deep(json_depth(value))}")
    return json.loads(text), hashlib.sha256(data).hexdigest(), len(data), text
