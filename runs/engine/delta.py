"""Compact state deltas, so checkpoint storage grows with what changed, not with the state.

A delta is a list of operations on a JSON value, applied in order:
``["set", path, value]``, ``["del", path]`` and ``["append", path, items]``
(a list that only grew keeps its prefix). Paths are lists of keys (dict keys
only; a changed list that did not just grow is set whole).
"""

from __future__ import annotations

import copy
import json
from typing import Any

Op = list[Any]


def diff(old: Any, new: Any, path: list[str] | None = None) -> list[Op]:
    path = path or []
    if isinstance(old, dict) and isinstance(new, dict):
        ops: list[Op] = []
        for key in old:
            if key not in new:
                ops.append(["del", [*path, key]])
        for key, value in new.items():
            if key not in old:
                ops.append(["set", [*path, key], value])
            elif old[key] != value or type(old[key]) is not type(value):
                ops.extend(diff(old[key], value, [*path, key]))
        return ops
    if isinstance(old, list) and isinstance(new, list) and len(new) > len(old) and new[: len(old)] == old:
        return [["append", path, new[len(old) :]]]
    if old == new and type(old) is type(new):
        return []
    return [["set", path, new]]


def encode(previous: Any, state: Any, *, state_size: int) -> list[Op] | None:
    """The delta from ``previous`` to ``state`` when it is under half the state's ``state_size`` bytes,
    else None: a snapshot is then cheaper to store and to read."""
    ops = diff(previous, state)
    if len(json.dumps(ops, separators=(",", ":"))) * 2 > state_size:
        return None
    return ops


def apply(value: Any, ops: list[Op], *, in_place: bool = False) -> Any:
    """``value`` with ``ops`` applied (a copy unless ``in_place``)."""
    if not in_place:
        value = copy.deepcopy(value)
    for op in ops:
        kind, path = op[0], op[1]
        if not path:
            if kind == "set":
                value = copy.deepcopy(op[2])
            elif kind == "append":
                value.extend(copy.deepcopy(op[2]))
            continue
        parent = value
        for key in path[:-1]:
            parent = parent[key]
        last = path[-1]
        if kind == "set":
            parent[last] = copy.deepcopy(op[2])
        elif kind == "del":
            del parent[last]
        elif kind == "append":
            parent[last].extend(copy.deepcopy(op[2]))
        else:
            raise ValueError(f"unknown delta operation {kind!r}")
    return value
