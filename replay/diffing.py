"""Readable state diffs for people (the engine's deltas are for storage)."""

from __future__ import annotations

from typing import Any

from runs.engine.delta import diff
from runs.engine.redaction import redact_at

MISSING = "<absent>"


def _get(value: Any, path: list[str]) -> Any:
    for key in path:
        if isinstance(value, dict) and key in value:
            value = value[key]
        else:
            return MISSING
    return value


def state_diff(before: Any, after: Any) -> list[dict[str, Any]]:
    """[{path, before, after}] for every changed place, paths as "$.a.b"; secrets masked for display."""
    changes = []
    for op in diff(before, after):
        kind, path = op[0], op[1]
        old = _get(before, path)
        if kind == "set":
            new = op[2]
        elif kind == "del":
            new = MISSING
        else:  # append
            new = [*old, *op[2]] if isinstance(old, list) else op[2]
        changes.append(
            {
                "path": "$" + "".join(f".{k}" for k in path),
                "before": old if old is MISSING else redact_at(path, old),
                "after": new if new is MISSING else redact_at(path, new),
            }
        )
    return changes
