"""Concurrency keys and rate limits: what a graph declares and the key a run gets from its input.

A declaration is ``{"key": "input.service", "limit": 1, "rate": {"starts": 10, "per_seconds": 60}}``:
at most ``limit`` runs with the same key in flight at once and at most ``rate.starts`` of them started
per ``rate.per_seconds``. ``key`` is a dotted path into the run input (a numeric part indexes a
list); without it the whole graph is one key (the key-less case, as a GraphLimit row is). ``limit``
or ``rate`` must be given. The stored key is ``"<graph name>:<value>"`` (``"<graph name>"`` when
key-less), so two graphs never share slots unless they mean to. Pure: no Django, no app.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

# The stored key's length (Run.concurrency_key is 255 characters; a graph name is at most 100).
MAX_KEY_LENGTH = 200
MAX_LIMIT = 100_000
MAX_RATE_STARTS = 1_000_000
MAX_RATE_PERIOD = 31 * 86400.0
PATH_PATTERN = r"^input(\.[A-Za-z0-9_\-]{1,100}){1,16}$"
_PATH = re.compile(PATH_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

class KeyPathError(ValueError):
    """The run input has no usable value at the declared key path; ``path`` names it."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class Slot:
    """What a run stores: its key ("" for none), its limit (None: no limit) and its rate (None: no rate)."""

    key: str = ""
    limit: int | None = None
    rate: dict[str, Any] | None = None


NO_SLOT = Slot()


def declaration_problems(declaration: Any) -> list[str]:
    """Every problem with a concurrency declaration, in words (the JSON Schema shape is checked apart)."""
    if declaration is None:
        return []
    if not isinstance(declaration, dict):
        return ["concurrency must be an object like {'key': 'input.service', 'limit': 1}"]
    problems = []
    if "limit" not in declaration and "rate" not in declaration:
        problems.append("concurrency needs a limit, a rate or both")
    key = declaration.get("key")
    if key is not None and (not isinstance(key, str) or not _PATH.match(key)):
        problems.append(
            f"concurrency key {key!r} is not a dotted path into the input such as 'input.service' or "
            "'input.customer.id' (parts of letters, digits, '_' and '-')"
        )
    limit = declaration.get("limit")
    bad_limit = isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT
    if "limit" in declaration and bad_limit:
        problems.append(f"concurrency limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}")
    rate = declaration.get("rate")
    if "rate" in declaration:
        starts = rate.get("starts") if isinstance(rate, dict) else None
        period = rate.get("per_seconds") if isinstance(rate, dict) else None
        if (
            not isinstance(rate, dict)
            or set(rate) != {"starts", "per_seconds"}
            or isinstance(starts, bool)
            or not isinstance(starts, int)
            or not 1 <= starts <= MAX_RATE_STARTS
            or isinstance(period, bool)
            or not isinstance(period, int | float)
            or not math.isfinite(period)
            or not 0 < period <= MAX_RATE_PERIOD
        ):
            problems.append(
                "concurrency rate must be {'starts': N, 'per_seconds': S} with N from 1 to "
                f"{MAX_RATE_STARTS} and S over 0 and at most {MAX_RATE_PERIOD:g}, not {rate!r}"
            )
    unknown = sorted(set(declaration) - {"key", "limit", "rate"})
    if unknown:
        problems.append(f"concurrency has unknown fields {unknown}: it takes key, limit and rate")
    return problems


def key_value(path: str, data: Any) -> str:
    """The text of the scalar at ``path`` ("input.a.b") in ``data``; KeyPathError naming the path if absent,
    not a scalar, empty, holding a control character or too long to store."""
    value = data
    walked = "input"
    for part in path.split(".")[1:]:
        walked = f"{walked}.{part}"
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise KeyPathError(path, f"the input has no value at {walked} (the graph's concurrency key)")
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | str) or (isinstance(value, float) and math.isfinite(value)):
        text = str(value)
    else:
        kind = "null" if value is None else type(value).__name__
        raise KeyPathError(path, f"the concurrency key must be a string, number or boolean, not {kind}")
    if text == "":
        raise KeyPathError(path, "the concurrency key is empty")
    if _CONTROL.search(text):
        raise KeyPathError(path, "the concurrency key holds a control character")
    return text


def run_slot(*, graph_name: str, declaration: dict[str, Any] | None, data: Any) -> Slot:
    """The slot a new run of ``graph_name`` takes under ``declaration`` (None: no slot)."""
    if not declaration:
        return NO_SLOT
    path = declaration.get("key")
    key = graph_name if path is None else f"{graph_name}:{key_value(path, data)}"
    if len(key) > MAX_KEY_LENGTH:
        raise KeyPathError(
            str(path),
            f"the concurrency key is {len(key)} characters with the graph's name; at most {MAX_KEY_LENGTH} are kept",
        )
    rate = declaration.get("rate")
    return Slot(
        key=key,
        limit=declaration.get("limit"),
        rate={"starts": int(rate["starts"]), "per_seconds": float(rate["per_seconds"])} if rate else None,
    )
