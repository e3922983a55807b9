"""Validate a graph definition before it is stored.

The shape is checked with JSON Schema, then the meaning: unknown nodes,
duplicate names, dangling or ambiguous edges, unreachable nodes and nodes
with no path to END. Every problem is reported, not only the first.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import jsonschema

from runs.engine.composition import BUILTIN_REDUCERS, MAX_FANOUT, CompositionError, fanout_join, known_reducer
from runs.engine.concurrency import declaration_problems
from runs.engine.determinism import MODES as DETERMINISM_MODES
from runs.engine.errors import GraphValidationError, RoutingError
from runs.engine.graph import DEFAULT_MAX_STEPS, END, NODES, NodeRegistry

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_.\-]{0,99}$"

# A run's budget for its model calls: tokens (input + output) and USD, each optional.
BUDGET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "tokens": {"type": "integer", "minimum": 1, "maximum": 1_000_000_000_000},
        "cost_usd": {"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000_000},
    },
}

DEFINITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name", "entry", "nodes", "edges"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "pattern": NAME_PATTERN},
        "description": {"type": "string", "maxLength": 2000},
        "entry": {"type": "string"},
        "nodes": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["name"],
                "additionalProperties": False,
                "properties": {
                    "name": {"type": "string", "pattern": NAME_PATTERN},
                    "timeout": {"type": ["number", "null"], "exclusiveMinimum": 0},
                    "join": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "mode": {"enum": ["all", "any", "first"]},
                            "k": {"type": "integer", "minimum": 1, "maximum": MAX_FANOUT},
                            "reducers": {
                                "type": "object",
                                "additionalProperties": {"type": "string", "minLength": 1, "maxLength": 100},
                            },
                            "errors": {"enum": ["fail", "collect"]},
                            "collect_key": {"type": "string", "minLength": 1, "maxLength": 100},
                        },
                    },
                    "retry": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "max_attempts": {"type": "integer", "minimum": 1, "maximum": 100},
                            "backoff": {"type": "number", "minimum": 0},
                            "multiplier": {"type": "number", "minimum": 1},
                            "max_backoff": {"type": "number", "minimum": 0},
                        },
                    },
                },
            },
        },
        "edges": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["from", "to"],
                "additionalProperties": False,
                "properties": {
                    "from": {"type": "string"},
                    "to": {"type": "string"},
                    "label": {"type": ["string", "null"]},
                },
            },
        },
        "input_schema": {"type": "object"},
        "max_steps": {"type": "integer", "minimum": 1, "maximum": 1_000_000},
        "run_timeout": {"type": ["number", "null"], "exclusiveMinimum": 0},
        # Absent means "warn"; not filled in, so definitions stored without it keep their hash.
        "determinism": {"enum": list(DETERMINISM_MODES)},
        # Absent means no concurrency key nor rate (runs.engine.concurrency checks what is inside).
        "concurrency": {"type": "object"},
        # Absent means no budget for the runs' model calls (runs.llm.usage).
        "budget": BUDGET_SCHEMA,
        # Older versions whose runs may run on this version's code (runs.engine.versions).
        "compatible_with": {"type": "array", "items": {"type": "integer", "minimum": 1}, "maxItems": 1000},
    },
}

_SHAPE = jsonschema.Draft202012Validator(DEFINITION_SCHEMA)
_BUDGET = jsonschema.Draft202012Validator(BUDGET_SCHEMA)


def budget_problem(value: Any) -> str:
    """Why ``value`` is not a budget for a run's model calls, or "" (None is no budget)."""
    if value is None:
        return ""
    error = next(iter(sorted(_BUDGET.iter_errors(value), key=str)), None)
    if error is None:
        return ""
    where = "budget" + "".join(f".{p}" for p in error.absolute_path)
    return f"{where}: {error.message}"


def validate_definition(definition: Any, registry: NodeRegistry = NODES) -> dict[str, Any]:
    """Return the definition with defaults filled in, or raise GraphValidationError."""
    name = definition.get("name", "?") if isinstance(definition, dict) else "?"
    shape_errors = sorted(_SHAPE.iter_errors(definition), key=lambda e: list(e.absolute_path))
    if shape_errors:
        raise GraphValidationError(
            str(name),
            [f"at {e.json_path}: {e.message}" for e in shape_errors],
        )
    problems: list[str] = []
    node_names = [n["name"] for n in definition["nodes"]]

    counts: dict[str, int] = defaultdict(int)
    for n in node_names:
        counts[n] += 1
    for n, c in counts.items():
        if c > 1:
            problems.append(f"duplicate node name {n!r} ({c} times)")
    declared = set(node_names)

    for n in node_names:
        if registry.get(n) is None:
            problems.append(f"unknown node {n!r}: no function is registered under that name")

    entry = definition["entry"]
    if entry not in declared:
        problems.append(f"entry node {entry!r} is not one of the graph's nodes")

    outgoing: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i, e in enumerate(definition["edges"]):
        src, dst = e["from"], e["to"]
        if src not in declared:
            problems.append(f"dangling edge #{i} {src!r} -> {dst!r}: source {src!r} is not a node of the graph")
        if dst != END and dst not in declared:
            problems.append(f"dangling edge #{i} {src!r} -> {dst!r}: target {dst!r} is not a node of the graph")
        outgoing[src].append(e)

    for src, edges in outgoing.items():
        seen_edges: dict[tuple[Any, Any], int] = defaultdict(int)
        by_label: dict[str | None, list[str]] = defaultdict(list)
        for e in edges:
            seen_edges[(e.get("label"), e["to"])] += 1
            by_label[e.get("label")].append(e["to"])
        for (label, dst), c in seen_edges.items():
            if c > 1:
                what = "unlabelled edges" if label is None else f"edges labelled {label!r}"
                problems.append(f"duplicate edge: node {src!r} has {c} {what} to {dst!r}")
        for label, dsts in by_label.items():
            if len(set(dsts)) < 2:
                continue
            # Several targets for one label: a static fan-out, whose branches must meet at one join.
            what = "unlabelled edges" if label is None else f"edges labelled {label!r}"
            try:
                if END in dsts:
                    raise CompositionError("END cannot be a branch")
                fanout_join(definition, sorted(set(dsts)))
            except CompositionError as exc:
                problems.append(
                    f"duplicate edge: node {src!r} has {len(dsts)} {what}, a fan-out that cannot run: {exc}"
                )
    for n in definition["nodes"]:
        for key, name in ((n.get("join") or {}).get("reducers") or {}).items():
            if not known_reducer(name):
                problems.append(
                    f"join node {n['name']!r}: reducer {name!r} for key {key!r} is not one of "
                    f"{', '.join(BUILTIN_REDUCERS)} nor a registered reducer"
                )
    for n in node_names:
        if n in declared and not outgoing.get(n):
            problems.append(f"node {n!r} has no outgoing edge (add an edge to END to finish there)")

    if entry in declared:
        reachable = _reach(entry, {s: [e["to"] for e in es] for s, es in outgoing.items()})
        for n in node_names:
            if n not in reachable:
                problems.append(f"node {n!r} is unreachable from the entry {entry!r}")
        reverse: dict[str, list[str]] = defaultdict(list)
        for s, es in outgoing.items():
            for e in es:
                reverse[e["to"]].append(s)
        reaches_end = _reach(END, reverse)
        if entry not in reaches_end:
            problems.append(f"no path to END from the entry {entry!r}")
        else:
            for n in node_names:
                if n in reachable and n not in reaches_end:
                    problems.append(f"no path to END from node {n!r}")

    problems.extend(declaration_problems(definition.get("concurrency")))
    try:
        jsonschema.Draft202012Validator.check_schema(definition.get("input_schema", {"type": "object"}))
    except jsonschema.SchemaError as exc:
        problems.append(f"input_schema is not a valid JSON Schema: {exc.message}")
    if problems:
        raise GraphValidationError(str(name), problems)

    filled = dict(definition)
    filled.setdefault("description", "")
    filled.setdefault("input_schema", {"type": "object"})
    filled.setdefault("max_steps", DEFAULT_MAX_STEPS)
    filled.setdefault("run_timeout", None)
    return filled


def _reach(start: str, adjacency: dict[str, list[str]]) -> set[str]:
    seen = {start}
    stack = [start]
    while stack:
        for nxt in adjacency.get(stack.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return seen


def route(definition: dict[str, Any], node_name: str, edge_label: str | None) -> str:
    """The target of ``node_name``'s edge for ``edge_label`` (falling back to the unlabelled edge)."""
    default = None
    for e in definition["edges"]:
        if e["from"] != node_name:
            continue
        if edge_label is not None and e.get("label") == edge_label:
            return str(e["to"])
        if e.get("label") is None:
            default = e["to"]
    if default is not None:
        return str(default)
    labels = sorted(str(e.get("label")) for e in definition["edges"] if e["from"] == node_name)
    raise RoutingError(f"node {node_name!r} returned edge {edge_label!r} but its edges are labelled {labels}")
