"""State diffs for people: what changed between two states, secrets masked (the engine's deltas are for storage).

One computation (:func:`changes`, over the engine's ``delta.diff``) and the two shapes its readers use:
``rows`` (the step inspector and the steps API: op, path, old, new) and ``pairs`` (verification and
comparison: path, before, after, with ``MISSING`` where a side has no value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runs.engine.delta import diff
from runs.engine.redaction import redact_at

MISSING = "<absent>"


@dataclass(frozen=True)
class Change:
    """One changed place: ``op`` is added, removed, changed or appended; ``items`` what an append added."""

    op: str
    path: list[str]
    before: Any
    after: Any
    items: Any = None

    @property
    def label(self) -> str:
        return "$" + "".join(f".{key}" for key in self.path)


def _at(value: Any, path: list[str]) -> Any:
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return MISSING
        value = value[key]
    return value


def changes(before: Any, after: Any) -> list[Change]:
    """Every change from ``before`` to ``after``, values masked where a key names a secret."""
    out = []
    for op in diff(before, after):
        kind, path = op[0], op[1]
        old = _at(before, path)
        if kind == "del":
            out.append(Change("removed", path, _masked(path, old), MISSING))
        elif kind == "append":
            grown = [*old, *op[2]] if isinstance(old, list) else op[2]
            out.append(Change("appended", path, _masked(path, old), _masked(path, grown), _masked(path, op[2])))
        else:
            out.append(Change("added" if old is MISSING else "changed", path, _masked(path, old), _masked(path, op[2])))
    return out


def _masked(path: list[str], value: Any) -> Any:
    return value if value is MISSING else redact_at(path, value)


def rows(before: Any, after: Any) -> list[dict[str, Any]]:
    """The step inspector's shape: {op, path, old, new}; an append's ``new`` is what it added."""
    out = []
    for c in changes(before, after):
        old = None if c.op in ("added", "appended") else c.before
        new = c.items if c.op == "appended" else (None if c.op == "removed" else c.after)
        out.append({"op": c.op, "path": c.label, "old": old, "new": new})
    return out


def pairs(before: Any, after: Any) -> list[dict[str, Any]]:
    """Verification's and comparison's shape: {path, before, after}; MISSING where a side has no value."""
    return [{"path": c.label, "before": c.before, "after": c.after} for c in changes(before, after)]
