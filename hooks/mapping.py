"""How a delivery's JSON becomes a run's input: the whole body, or fields picked by JSON path (jsonpath-ng).

A mapping is ``{"service": "$.alert.labels.service", "severity": "$.alert.severity"}``: each input field
gets the value its path finds. A path that finds nothing leaves the field out (the graph's input schema then
says what is missing); one that finds several values (``$.alerts[*].id``) gives a list of them. Paths are
jsonpath-ng's base grammar (fields, indexes, slices, wildcards, ``..``); they must start at the root ``$``.
"""

from __future__ import annotations

import functools
from typing import Any

from jsonpath_ng import JSONPath, parse
from jsonpath_ng.exceptions import JSONPathError

MAX_FIELDS = 50
MAX_PATH_LENGTH = 200
_FIELD_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


class MappingError(ValueError):
    """A mapping or path that cannot be used, naming the entry."""


@functools.lru_cache(maxsize=1024)
def compile_path(path: str) -> JSONPath:
    """The parsed ``path``, or MappingError saying why it is not one."""
    if not isinstance(path, str) or not path.startswith("$"):
        raise MappingError(f"{path!r} is not a JSON path: it must start with $ (e.g. $.alert.severity)")
    if len(path) > MAX_PATH_LENGTH:
        raise MappingError(f"a JSON path is at most {MAX_PATH_LENGTH} characters")
    try:
        return parse(path)
    except (JSONPathError, ValueError, TypeError, AttributeError) as exc:
        raise MappingError(f"{path!r} is not a JSON path: {exc}") from None


def check_mapping(mapping: Any) -> dict[str, str]:
    """``mapping`` if every entry is a field name and a JSON path; MappingError otherwise."""
    if not isinstance(mapping, dict) or not mapping:
        raise MappingError('the mapping must be an object of input field -> JSON path, e.g. {"id": "$.id"}')
    if len(mapping) > MAX_FIELDS:
        raise MappingError(f"at most {MAX_FIELDS} fields may be mapped")
    for field, path in mapping.items():
        if not field or len(field) > 100 or not set(field) <= _FIELD_CHARS:
            raise MappingError(f"input field {field!r}: use letters, digits, _ - . (at most 100)")
        if not isinstance(path, str):
            raise MappingError(f"input field {field!r}: the JSON path must be a string")
        compile_path(path)
    return dict(mapping)


def find(path: str, data: Any) -> list[Any]:
    """Every value ``path`` finds in ``data``, in document order."""
    return [m.value for m in compile_path(path).find(data)]


def map_input(mapping: dict[str, str], data: Any) -> dict[str, Any]:
    """The run input ``mapping`` picks from ``data``."""
    result: dict[str, Any] = {}
    for field, path in mapping.items():
        values = find(path, data)
        if len(values) == 1:
            result[field] = values[0]
        elif values:
            result[field] = values
    return result
