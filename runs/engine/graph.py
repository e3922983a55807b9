"""Graphs in code: ``@node`` registers a function, ``graph(...)`` wires them.

Both code graphs and JSON definitions end up as one plain definition dict
(see :func:`GraphSpec.definition`), validated by :mod:`runs.engine.validation`
and stored by the runs app. Node functions are looked up by name in a
process-wide registry, so a JSON definition can only name registered nodes.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runs.engine.hashing import sha256_hex

END = "__end__"
# A graph that does not say how many steps a run may take allows this many (cycles must end).
DEFAULT_MAX_STEPS = 1000

NodeFn = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts include the first try; delay = backoff * multiplier**(attempt-1), capped."""

    max_attempts: int = 1
    backoff: float = 0.5
    multiplier: float = 2.0
    max_backoff: float = 60.0

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff * self.multiplier ** max(attempt - 1, 0), self.max_backoff))

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "backoff": self.backoff,
            "multiplier": self.multiplier,
            "max_backoff": self.max_backoff,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RetryPolicy:
        return cls(**data) if data else cls()


@dataclass(frozen=True)
class NodeSpec:
    name: str
    fn: NodeFn
    timeout: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    @property
    def source_hash(self) -> str:
        return source_hash(self.fn)


_SOURCE_HASHES: dict[Callable[..., Any], str] = {}


def source_hash(fn: Callable[..., Any]) -> str:
    """SHA-256 of the function's dedented source (falls back to its bytecode); cached per function."""
    cached = _SOURCE_HASHES.get(fn)
    if cached is None:
        cached = _SOURCE_HASHES[fn] = _compute_source_hash(fn)
    return cached


def _compute_source_hash(fn: Callable[..., Any]) -> str:
    try:
        text = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        code = getattr(fn, "__code__", None)
        text = repr(code.co_code if code else fn)
    return sha256_hex(text)


class NodeRegistry:
    def __init__(self) -> None:
        self._nodes: dict[str, NodeSpec] = {}

    def register(self, spec: NodeSpec) -> None:
        existing = self._nodes.get(spec.name)
        if existing and existing.fn is not spec.fn and _qualname(existing.fn) != _qualname(spec.fn):
            raise ValueError(f"node name {spec.name!r} is already registered by {_qualname(existing.fn)}")
        self._nodes[spec.name] = spec

    def get(self, name: str) -> NodeSpec | None:
        return self._nodes.get(name)

    def names(self) -> list[str]:
        return sorted(self._nodes)

    def unregister(self, name: str) -> None:
        self._nodes.pop(name, None)


def _qualname(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__qualname__}"


NODES = NodeRegistry()


def node(name: str, *, timeout: float | None = None, retry: RetryPolicy | None = None) -> Callable[[NodeFn], NodeFn]:
    """Register ``fn(state, ctx) -> ctx.result(...)`` under ``name``."""

    def decorate(fn: NodeFn) -> NodeFn:
        NODES.register(NodeSpec(name=name, fn=fn, timeout=timeout, retry=retry or RetryPolicy()))
        fn.cmo_node_name = name  # type: ignore[attr-defined]
        return fn

    return decorate


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "label": self.label}


@dataclass
class GraphSpec:
    """A graph as code declares it; ``definition()`` gives the stored form."""

    name: str
    entry: str
    nodes: list[str]
    edges: list[Edge]
    description: str = ""
    input_schema: dict[str, Any] | None = None
    max_steps: int = DEFAULT_MAX_STEPS
    run_timeout: float | None = None
    determinism: str = "warn"
    joins: dict[str, dict[str, Any]] = field(default_factory=dict)
    concurrency: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None
    # Older versions of this graph whose runs this code may execute (runs.engine.versions).
    compatible_with: list[int] = field(default_factory=list)

    def definition(self, registry: NodeRegistry = NODES) -> dict[str, Any]:
        nodes = []
        for name in self.nodes:
            spec = registry.get(name)
            entry: dict[str, Any] = {"name": name}
            if spec is not None:
                entry["timeout"] = spec.timeout
                entry["retry"] = spec.retry.as_dict()
            if name in self.joins:
                entry["join"] = dict(self.joins[name])
            nodes.append(entry)
        definition: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "entry": self.entry,
            "nodes": nodes,
            "edges": [e.as_dict() for e in self.edges],
            "input_schema": self.input_schema or {"type": "object"},
            "max_steps": self.max_steps,
            "run_timeout": self.run_timeout,
        }
        # Only when it is not the default, so the graphs stored before the setting existed keep their hash.
        if self.determinism != "warn":
            definition["determinism"] = self.determinism
        if self.concurrency is not None:
            definition["concurrency"] = dict(self.concurrency)
        if self.budget is not None:
            definition["budget"] = dict(self.budget)
        if self.compatible_with:
            definition["compatible_with"] = sorted(self.compatible_with)
        return definition


class GraphRegistry:
    def __init__(self) -> None:
        self._graphs: dict[str, GraphSpec] = {}

    def register(self, spec: GraphSpec) -> None:
        self._graphs[spec.name] = spec

    def get(self, name: str) -> GraphSpec | None:
        return self._graphs.get(name)

    def all(self) -> list[GraphSpec]:
        return [self._graphs[k] for k in sorted(self._graphs)]


GRAPHS = GraphRegistry()


def graph(
    name: str,
    *,
    entry: str,
    edges: list[tuple[str, str] | tuple[str, str, str | None]],
    nodes: list[str] | None = None,
    description: str = "",
    input_schema: dict[str, Any] | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    run_timeout: float | None = None,
    determinism: str = "warn",
    joins: dict[str, dict[str, Any]] | None = None,
    concurrency: dict[str, Any] | None = None,
    budget: dict[str, Any] | None = None,
    compatible_with: list[int] | None = None,
    register: bool = True,
) -> GraphSpec:
    """Declare a graph from ``(source, target[, label])`` edges; ``END`` ends a run.

    Nodes default to every name that appears in the edges, in order of appearance.
    ``determinism`` says what a node's direct call to the clock or a random source does
    (:mod:`runs.engine.determinism`): ``"warn"`` (a run event per call site), ``"strict"``
    (the step fails, not retried) or ``"off"`` (not watched: CPU-heavy nodes run faster).
    ``joins`` marks join nodes and their settings (runs.engine.composition): node name ->
    ``{"mode": "all"|"any"|"first", "k": 2, "reducers": {"answers": "append"}, "errors": "fail"|"collect"}``.
    Several edges with the same label (or unlabelled) from one node fan out to their targets at once.
    ``concurrency`` limits runs per key computed from the input (runs.engine.concurrency):
    ``{"key": "input.service", "limit": 1, "rate": {"starts": 10, "per_seconds": 60}}``.
    ``budget`` caps each run's model calls (runs.llm): ``{"tokens": 200000, "cost_usd": 1.5}``; a start
    request or a schedule may give its own. ``compatible_with`` lists older versions of this graph whose runs
    in flight may run on this code (its nodes changed in ways those runs survive); otherwise a run waits for a
    worker with its own version's code (runs.engine.versions).
    """
    edge_objs = [Edge(e[0], e[1], e[2] if len(e) > 2 else None) for e in edges]  # type: ignore[misc]
    if nodes is None:
        seen: dict[str, None] = {entry: None}
        for e in edge_objs:
            for n in (e.source, e.target):
                if n != END:
                    seen.setdefault(n, None)
        nodes = list(seen)
    spec = GraphSpec(
        name=name,
        entry=entry,
        nodes=nodes,
        edges=edge_objs,
        description=description,
        input_schema=input_schema,
        max_steps=max_steps,
        run_timeout=run_timeout,
        determinism=determinism,
        joins=dict(joins or {}),
        concurrency=dict(concurrency) if concurrency is not None else None,
        budget=dict(budget) if budget is not None else None,
        compatible_with=sorted(set(compatible_with or [])),
    )
    if register:
        GRAPHS.register(spec)
    return spec
