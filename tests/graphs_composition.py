"""Nodes and graphs for the composition tests: branches, joins, child runs, timers, signals ("c_*", "c-*")."""

from __future__ import annotations

from typing import Any

from runs.engine import END, graph, node
from runs.engine.composition import Send

# Switches the replay tests flip to stand for a changed deploy of a node's code.
KNOBS: dict[str, Any] = {"extra_send": False, "changed_asker": ""}


@node("c_start")
def c_start(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "answers": [], "asked": True})


def _asker(name: str) -> Any:
    def ask(state: dict[str, Any], ctx: Any) -> Any:
        if state.get("fail") == name:
            raise RuntimeError(f"{name} is down")
        url = state.get("url")
        if url:
            ctx.activities.http("POST", f"{url}/count", json={"who": name})
        said = "no" if KNOBS["changed_asker"] == name else "yes"
        return ctx.result({**state, "answers": [*state["answers"], f"{name} says {said}"], f"by_{name}": True})

    ask.__name__ = f"c_ask_{name}"
    return ask


for _name in ("a", "b", "c"):
    node(f"c_ask_{_name}")(_asker(_name))


@node("c_merge")
def c_merge(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "merged": len(state["answers"])})


graph(
    "c-static",
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
)
graph(
    "c-static-collect",
    entry="c_start",
    nodes=["c_start", "c_ask_a", "c_ask_b", "c_ask_c", "c_merge"],
    edges=[
        ("c_start", "c_ask_a"),
        ("c_start", "c_ask_b"),
        ("c_start", "c_ask_c"),
        ("c_ask_a", "c_merge"),
        ("c_ask_b", "c_merge"),
        ("c_ask_c", "c_merge"),
        ("c_merge", END),
    ],
    joins={"c_merge": {"reducers": {"answers": "append"}, "errors": "collect"}},
)
graph(
    "c-static-first",
    entry="c_start",
    nodes=["c_start", "c_ask_a", "c_ask_b", "c_ask_c", "c_merge"],
    edges=[
        ("c_start", "c_ask_a"),
        ("c_start", "c_ask_b"),
        ("c_start", "c_ask_c"),
        ("c_ask_a", "c_merge"),
        ("c_ask_b", "c_merge"),
        ("c_ask_c", "c_merge"),
        ("c_merge", END),
    ],
    joins={"c_merge": {"mode": "first", "k": 2, "reducers": {"answers": "append"}}},
)


@node("c_after")
def c_after(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "after": state["merged"]})


graph(
    "c-static-then",
    entry="c_start",
    nodes=["c_start", "c_ask_a", "c_ask_b", "c_ask_c", "c_merge", "c_after"],
    edges=[
        ("c_start", "c_ask_a"),
        ("c_start", "c_ask_b"),
        ("c_start", "c_ask_c"),
        ("c_ask_a", "c_merge"),
        ("c_ask_b", "c_merge"),
        ("c_ask_c", "c_merge"),
        ("c_merge", "c_after"),
        ("c_after", END),
    ],
    joins={"c_merge": {"reducers": {"answers": "append"}}},
)


@node("c_split")
def c_split(state: dict[str, Any], ctx: Any) -> Any:
    docs = state["docs"] + (["extra"] if KNOBS["extra_send"] else [])
    return ctx.result(
        {**state, "summaries": []},
        send=[Send("c_summarize", {"doc": d, "url": state.get("url"), "summaries": []}) for d in docs],
        limit=state.get("limit"),
    )


@node("c_summarize")
def c_summarize(state: dict[str, Any], ctx: Any) -> Any:
    if state.get("url"):
        ctx.activities.http("POST", f"{state['url']}/count", json={"doc": state["doc"]})
    return ctx.result({**state, "summaries": [f"summary of {state['doc']}"], "total": len(state["doc"])})


@node("c_gather")
def c_gather(state: dict[str, Any], ctx: Any) -> Any:
    summaries = state["summaries"]
    return ctx.result({"count": len(summaries), "summaries": summaries, "total": state.get("total", 0)})


graph(
    "c-dynamic",
    entry="c_split",
    edges=[("c_split", "c_summarize"), ("c_summarize", "c_gather"), ("c_gather", END)],
    joins={"c_gather": {"reducers": {"summaries": "append", "total": "sum"}}},
)


@node("c_parent")
def c_parent(state: dict[str, Any], ctx: Any) -> Any:
    handles = [
        ctx.activities.start_run(state.get("graph", "t-count"), {"target": n}, detach=state.get("detach", False))
        for n in state.get("targets", [2])
    ]
    if state.get("no_wait"):
        return ctx.result({**state, "children": [h["trace_id"] for h in handles]})
    results = ctx.activities.wait_runs(handles, mode=state.get("mode", "all"))
    return ctx.result({**state, "results": [{"status": r["status"], "state": r["state"]} for r in results]})


graph("c-child", entry="c_parent", edges=[("c_parent", END)])


@node("c_nap")
def c_nap(state: dict[str, Any], ctx: Any) -> Any:
    woke = ctx.activities.sleep(state.get("seconds", 1))
    return ctx.result({**state, "woke": woke})


graph("c-timer", entry="c_nap", edges=[("c_nap", END)])


@node("c_listen")
def c_listen(state: dict[str, Any], ctx: Any) -> Any:
    schema = {"type": "object", "required": ["go"], "properties": {"go": {"type": "boolean"}}}
    return ctx.result({**state, "heard": ctx.activities.wait_for_signal("proceed", schema=schema)})


graph("c-signal", entry="c_listen", edges=[("c_listen", END)])
