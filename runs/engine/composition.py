"""Parallel branches: fan-out (static edges or ``Send``), joins and their reducers. Pure: no storage.

Semantics (README "Writing a graph", "Branches"):

- A node whose edges for the label it returned lead to several nodes fans out (static); a node that
  returns ``ctx.result(state, send=[Send("node", input), ...], limit=10)`` fans out one branch per
  Send (dynamic), at most ``limit`` running at once (the rest wait their turn, in order).
- Each branch is a run of its own (kind "branch", with its own steps, activities, hashes and lease),
  starting at its node with the fanning-out state (static) or its Send's input (dynamic), and ending
  when its next node is the join: the nearest node marked ``join`` on its path (every branch of a
  fan-out must meet at the same join), or END.
- The run itself moves to the join node and waits there (WAITING, no worker held) for a recorded
  ``join`` activity: the branches' final states and statuses, in branch order. The join node then runs
  once, on the fanning-out state merged with the branches' states by the join's reducers.
- A join waits for ``mode``: "all" branches to end (the default), or the "first" ``k`` to complete
  ("any" is k = 1; the others are then cancelled). A failed branch fails the join unless the join
  says ``errors: "collect"``, which puts ``[{branch, node, error}]`` under ``collect_key`` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runs.engine.errors import EngineError
from runs.engine.graph import END

# The most branches one fan-out may start (a larger Send list fails the step saying so).
MAX_FANOUT = 10_000
JOIN_MODES = ("all", "any", "first")
BUILTIN_REDUCERS = ("append", "collect", "merge", "sum", "last")


class CompositionError(EngineError):
    """A fan-out or join the graph cannot do (deterministic: the step fails, never retried)."""


@dataclass(frozen=True)
class Send:
    """One branch of a dynamic fan-out: run ``node`` with ``input`` as its state."""

    node: str
    input: Any


@dataclass
class FanOut:
    """What a step that fans out asks the store to start, in the same transaction as the step."""

    join: str
    branches: list[tuple[str, Any]]  # (node, state), in branch order
    limit: int | None = None
    dynamic: bool = False  # from Sends (each its own input), not from edges (each the step's state)


@dataclass
class Join:
    """A join node's settings, from its definition entry's ``join``."""

    mode: str = "all"
    k: int = 1
    reducers: dict[str, str] = field(default_factory=dict)
    errors: str = "fail"
    collect_key: str = "branch_errors"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Join:
        mode = data.get("mode", "all")
        k = 1 if mode == "any" else int(data.get("k") or 1)
        return cls(
            mode="first" if mode == "any" else mode,
            k=k,
            reducers=dict(data.get("reducers") or {}),
            errors=data.get("errors", "fail"),
            collect_key=data.get("collect_key", "branch_errors"),
        )

    def as_request(self, fanout_step: int) -> dict[str, Any]:
        """What the join activity records (and what deciding when to answer it needs)."""
        return {"fanout_step": fanout_step, "mode": self.mode, "k": self.k, "errors": self.errors}


# -- the graph --------------------------------------------------------------------------------


def join_of(definition: dict[str, Any], name: str) -> Join | None:
    for n in definition.get("nodes", []):
        if n["name"] == name and n.get("join") is not None:
            return Join.from_dict(n["join"])
    return None


def targets(definition: dict[str, Any], node_name: str, edge_label: str | None) -> list[str]:
    """Every target of ``node_name``'s edges for ``edge_label`` (the labelled ones, else the unlabelled ones)."""
    labelled = [str(e["to"]) for e in definition["edges"] if e["from"] == node_name and edge_label is not None
                and e.get("label") == edge_label]
    if labelled:
        return labelled
    return [str(e["to"]) for e in definition["edges"] if e["from"] == node_name and e.get("label") is None]


def nearest_join(definition: dict[str, Any], start: str) -> str | None:
    """The first join node on the paths from ``start`` (``start`` itself counts), breadth first; None if none."""
    joins = {n["name"] for n in definition.get("nodes", []) if n.get("join") is not None}
    seen, frontier = {start}, [start]
    while frontier:
        following = []
        for name in frontier:
            if name in joins:
                return name
            for e in definition["edges"]:
                if e["from"] == name and e["to"] != END and e["to"] not in seen:
                    seen.add(e["to"])
                    following.append(e["to"])
        frontier = following
    return None


def fanout_join(definition: dict[str, Any], starts: list[str]) -> str:
    """The one join every branch starting at ``starts`` meets; CompositionError naming the branches otherwise."""
    found = {start: nearest_join(definition, start) for start in starts}
    joins = set(found.values())
    if None in joins or len(joins) != 1:
        where = ", ".join(f"{s} -> {j or 'no join'}" for s, j in found.items())
        raise CompositionError(f"the branches must meet at one join node (a node with join settings): {where}")
    join = joins.pop()
    assert join is not None
    if join in starts:
        raise CompositionError(f"a branch cannot start at its own join node {join!r}")
    return join


# -- reducers ---------------------------------------------------------------------------------

Reducer = Callable[[Any, list[Any]], Any]
REDUCERS: dict[str, Reducer] = {}


def reducer(name: str) -> Callable[[Reducer], Reducer]:
    """Register ``fn(base, values) -> merged`` as a join reducer: ``base`` is the fanning-out state's value (or
    None), ``values`` what each branch that wrote the key wrote, in branch order."""

    def decorate(fn: Reducer) -> Reducer:
        REDUCERS[name] = fn
        return fn

    return decorate


def known_reducer(name: str) -> bool:
    return name in BUILTIN_REDUCERS or name in REDUCERS


def branch_update(start: Any, final: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """What a branch wrote: the keys of its final state whose values differ from its input's, and those keys'
    input values (where its input had them). A branch whose state is not an object wrote nothing mergeable."""
    if not isinstance(final, dict):
        return {}, {}
    start = start if isinstance(start, dict) else {}
    update = {k: v for k, v in final.items() if k not in start or start[k] != v}
    before = {k: start[k] for k in update if k in start}
    return update, before


def _added(before: Any, value: Any) -> list[Any]:
    """What a branch added to a list: its items after the ones it started with, or all if it did not keep them."""
    if isinstance(before, list) and isinstance(value, list) and value[: len(before)] == before:
        return value[len(before) :]
    return value if isinstance(value, list) else [value]


def _number(key: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise CompositionError(f"reducer sum for key {key!r} needs numbers, a branch has {type(value).__name__}")
    return value


def _reduce(name: str, key: str, base: Any, writes: list[tuple[Any, Any]]) -> Any:
    """Reduce the branches' ``writes`` of ``key`` (each (value, value the branch started with)) onto ``base``."""
    values = [v for v, _ in writes]
    if name == "append":
        merged = list(base) if isinstance(base, list) else []
        for value, before in writes:
            merged.extend(_added(before, value))
        return merged
    if name == "collect":
        return values
    if name == "merge":
        out = dict(base) if isinstance(base, dict) else {}
        for v in values:
            if not isinstance(v, dict):
                raise CompositionError(f"reducer merge for key {key!r} needs objects, a branch has {type(v).__name__}")
            out.update(v)
        return out
    if name == "sum":
        total = _number(key, base) if base is not None else 0
        for value, before in writes:
            total += _number(key, value) - (_number(key, before) if before is not None else 0)
        return total
    if name == "last":
        return values[-1] if values else base
    return REDUCERS[name](base, values)


def merge(base: dict[str, Any], results: list[dict[str, Any]], join: Join) -> dict[str, Any]:
    """The join node's input: ``base`` (the fanning-out state) with what the branches wrote merged in.

    A branch writes the keys its final state changed from its input (``update``, with their input values
    in ``before``: :func:`branch_update`). A key with a reducer is reduced over the branches that wrote it,
    in branch order. A key without one takes the value the branches wrote; two branches writing different
    values is an error (as LangGraph's concurrent-update error), since nothing says which should win.
    """
    if not isinstance(base, dict):
        raise CompositionError("a join merges objects: the fanning-out state is not one")
    completed = [r for r in results if r["status"] == "COMPLETED"]
    merged = dict(base)
    for key, name in join.reducers.items():
        writes = [(r["update"][key], r["before"].get(key)) for r in completed if key in r["update"]]
        if key not in base and not writes:
            if completed:
                raise CompositionError(
                    f"the join has a reducer for key {key!r}, which neither the state nor a branch has"
                )
            continue  # no branch completed (a fan-out of none, or all failed and collected): nothing to reduce
        merged[key] = _reduce(name, key, base.get(key), writes)
    for key in sorted({k for r in completed for k in r["update"]} - set(join.reducers)):
        written = [(r["branch"], r["update"][key]) for r in completed if key in r["update"]]
        if len({repr(v) for _, v in written}) > 1:
            which = ", ".join(str(b) for b, _ in written)
            raise CompositionError(
                f"branches {which} set key {key!r} to different values and the join has no reducer for it: "
                f"declare one (append, collect, merge, sum, last or a registered reducer)"
            )
        merged[key] = written[0][1]
    failed = [r for r in results if r["status"] != "COMPLETED" and not r.get("cancelled")]
    if failed and join.errors == "collect":
        merged[join.collect_key] = [
            {"branch": r["branch"], "node": r.get("node"), "status": r["status"], "error": r.get("error", "")}
            for r in failed
        ]
    return merged


def join_failure(results: list[dict[str, Any]], join: Join) -> str:
    """Why the join fails ("" if it does not): a branch failed and the join does not collect errors."""
    if join.errors == "collect":
        return ""
    failed = [r for r in results if r["status"] != "COMPLETED" and not r.get("cancelled")]
    if not failed:
        return ""
    first = failed[0]
    return f"branch {first['branch']} ended {first['status']}: {first.get('error') or 'no error text'}"


def join_satisfied(statuses: list[str], join: Join) -> bool:
    """Whether branches with these statuses (in branch order; "" while a branch is active) let the join run."""
    ended = [s for s in statuses if s]
    if len(ended) == len(statuses):
        return True
    if join.errors == "fail" and any(s not in ("", "COMPLETED") for s in statuses):
        return True  # a failure decides it
    if join.mode == "first":
        return sum(1 for s in statuses if s == "COMPLETED") >= join.k
    return False
