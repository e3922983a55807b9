"""JSON from outside (API bodies, forms, uploaded bundles and definitions): parsed strictly, so what is
accepted can be stored and read back.

RFC 8259 JSON only: UTF-8 without a byte order mark, no NaN or Infinity (Python's parser takes
them by default). On top of that, what no database or reader can keep: NUL characters (PostgreSQL
refuses them in text and jsonb), lone surrogates (no UTF-8 form) and nesting deeper than the
engine stores (``hashing.MAX_JSON_DEPTH``, plus a margin for the document that carries a value:
a bundle holds states a few levels down).
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from runs.engine.errors import CMOError
from runs.engine.hashing import MAX_JSON_DEPTH

# The largest integer a counter column (PositiveIntegerField: 32-bit in PostgreSQL) stores.
MAX_INT = 2**31 - 1
# A request body or file may wrap stored values this many levels deep (bundle > steps > [i] > state).
DOCUMENT_DEPTH_MARGIN = 10


class JSONInputError(CMOError, ValueError):
    """Input that is not JSON we accept. ``status`` is 400 for what is not JSON at all, 422 for JSON we refuse."""

    def __init__(self, status: int, code: str, message: str):
        self.status = status  # type: ignore[misc]  # per instance: 400 or 422
        self.code = code  # type: ignore[misc]
        self.message = message
        super().__init__(message)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (RFC 8259 has no NaN or Infinity)")


def parse_json(data: bytes | str, *, what: str, max_depth: int = MAX_JSON_DEPTH + DOCUMENT_DEPTH_MARGIN) -> Any:
    """The value of JSON ``data``, or JSONInputError saying what is wrong with it."""
    if isinstance(data, bytes):
        if data.startswith(codecs.BOM_UTF8):
            raise JSONInputError(400, "malformed_request", f"{what} starts with a UTF-8 byte order mark; omit it")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONInputError(400, "malformed_request", f"{what} is not UTF-8 text: {exc.reason}") from None
    elif data.startswith("\ufeff"):
        raise JSONInputError(400, "malformed_request", f"{what} starts with a byte order mark; send it without")
    try:
        value = json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:
        raise JSONInputError(
            422, "too_deep", f"{what} is nested too deeply to read; at most {max_depth} levels are accepted"
        ) from None
    except ValueError as exc:  # json.JSONDecodeError included
        raise JSONInputError(400, "malformed_request", f"{what} is not valid JSON: {exc}") from None
    return check_storable(value, what=what, max_depth=max_depth)


def check_storable(value: Any, *, what: str, max_depth: int = MAX_JSON_DEPTH + DOCUMENT_DEPTH_MARGIN) -> Any:
    """``value`` unchanged if it can be stored and read back; otherwise JSONInputError.

    One walk without recursion: nesting over ``max_depth`` (422), a NUL character (422,
    valid JSON that no database keeps), a lone surrogate such as ``"\\ud800"`` (400: not UTF-8).
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise JSONInputError(422, "unstorable_value", f"{what} contains a NUL character: no column stores it")
            if not item.isascii():
                try:
                    item.encode()
                except UnicodeEncodeError:
                    raise JSONInputError(400, "malformed_request", f"{what} has a lone surrogate: not UTF-8") from None
        elif isinstance(item, (dict, list)):
            if depth + 1 > max_depth:
                raise JSONInputError(
                    422, "too_deep", f"{what} is nested more than {max_depth} levels deep; that is the most accepted"
                )
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
    return value
