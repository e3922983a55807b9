"""Graphs with concurrency keys and rate limits ("k-*"); workers load them via CMO_GRAPH_MODULES."""

from __future__ import annotations

import time
from typing import Any

import tests.graphs_composition  # noqa: F401 - the c_* nodes of k-fan
from runs.engine import END, graph, node


@node("k_work", timeout=10)
def k_work(state: dict[str, Any], ctx: Any) -> Any:
    time.sleep(state.get("sleep", 0))
    return ctx.result({**state, "done": True})


@node("k_then")
def k_then(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "then": True})


graph(
    "k-two",
    entry="k_work",
    edges=[("k_work", "k_then"), ("k_then", END)],
    concurrency={"key": "input.service", "limit": 1},
)
graph("k-service", entry="k_work", edges=[("k_work", END)], concurrency={"key": "input.service", "limit": 1})
graph("k-pair", entry="k_work", edges=[("k_work", END)], concurrency={"key": "input.customer.id", "limit": 2})
graph(
    "k-rate",
    entry="k_work",
    edges=[("k_work", END)],
    concurrency={"key": "input.service", "rate": {"starts": 2, "per_seconds": 60}},
)
graph("k-whole", entry="k_work", edges=[("k_work", END)], concurrency={"limit": 1})
graph(
    "k-fan",
    entry="c_start",
    edges=[
        ("c_start", "c_ask_a"),
        ("c_start", "c_ask_b"),
        ("c_start", "c_ask_c"),
        ("c_ask_a", "c_merge"),
        ("c_ask_b", "c_merge"),
        ("c_ask_c", "c_merge"),
        ("c_merge", END),
    ],
    joins={"c_merge": {"reducers": {"answers": "append"}}},
    concurrency={"key": "input.service", "limit": 1},
)
