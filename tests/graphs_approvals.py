"""Nodes and graphs for the approval tests (nodes "ap_*", graphs "ap-*"); registered on import.

Every effect the nodes do is an HTTP POST to a counting server at ``state["url"]``,
so a test can count how often each one really ran.
"""

from __future__ import annotations

from typing import Any

from runs.engine import END, graph, node
from runs.engine.specialists import specialist


@node("ap_before")
def ap_before(state: dict[str, Any], ctx: Any) -> Any:
    ctx.activities.http("POST", state["url"] + "/before", json={})
    return ctx.result(state)


@node("ap_gate")
def ap_gate(state: dict[str, Any], ctx: Any) -> Any:
    ctx.activities.http("POST", state["url"] + "/gate", json={})
    decision = ctx.activities.request_approval(state["action"], preview=state.get("preview", ""))
    if not decision["approved"]:
        return ctx.result({**state, "decision": decision}, edge="rejected")
    ctx.activities.http("POST", state["url"] + "/act", json={})
    return ctx.result({**state, "decision": decision}, edge="approved")


@node("ap_rejected")
def ap_rejected(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "routed": "rejected"})


@node("ap_require")
def ap_require(state: dict[str, Any], ctx: Any) -> Any:
    decision = ctx.activities.require_approval(state["action"], preview=state.get("preview", ""))
    return ctx.result({**state, "decision": decision})


graph(
    "ap-flow",
    entry="ap_before",
    nodes=["ap_before", "ap_gate", "ap_rejected"],
    edges=[
        ("ap_before", "ap_gate"),
        ("ap_gate", END, "approved"),
        ("ap_gate", "ap_rejected", "rejected"),
        ("ap_rejected", END),
    ],
)
graph("ap-require", entry="ap_require", edges=[("ap_require", END)])


@specialist("ap_echo", capabilities=["echo"])
def ap_echo(task: str, payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    return {"task": task, "echo": payload}


@node("ap_call")
def ap_call(state: dict[str, Any], ctx: Any) -> Any:
    """One send_a2a as the input says: the policy tests choose specialist, task and payload."""
    answer = ctx.activities.send_a2a(state["specialist"], state.get("task", "echo"), state.get("payload", {}))
    return ctx.result({**state, "answer": answer})


graph("ap-call", entry="ap_call", edges=[("ap_call", END)])
