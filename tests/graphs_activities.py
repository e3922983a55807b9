"""Nodes and graphs for the activity tests (nodes "a_*", graphs "a-*"); registered on import.

Every node takes what it does from its input state, so a test chooses the URL,
SQL or specialist when it starts the run, and a re-execution of the step (after a
simulated crash) asks for exactly the same activities.
"""

from __future__ import annotations

import hashlib
from typing import Any

from runs.engine import END, RetryPolicy, graph, node
from runs.engine.errors import ActivityError

# Calls of the "a_counter" specialist handler (the test module registers it for a test).
A2A_CALLS: list[dict[str, Any]] = []


def a_counter_specialist(task: str, payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    A2A_CALLS.append({"task": task, "payload": payload, "meta": meta})
    return {"calls": len(A2A_CALLS), "task": task, "echo": payload}


@node("a_http")
def a_http(state: dict[str, Any], ctx: Any) -> Any:
    """``calls`` requests per step for ``steps`` steps; keeps each answer's status and body."""
    responses = list(state.get("responses", []))
    for _ in range(state.get("calls", 1)):
        resp = ctx.activities.http(
            state.get("method", "POST"),
            state["url"] + state.get("path", "/hit"),
            headers=state.get("headers"),
            json=state.get("json", {"step": ctx.step}),
            timeout=state.get("timeout", 10.0),
        )
        responses.append({"status": resp["status"], "body": resp["body"]})
    step = state.get("step", 0) + 1
    edge = "again" if step < state.get("steps", 1) else "done"
    return ctx.result({**state, "step": step, "responses": responses}, edge=edge)


@node("a_http_catch")
def a_http_catch(state: dict[str, Any], ctx: Any) -> Any:
    """One request; a failed activity is kept in the state instead of failing the step."""
    try:
        resp = ctx.activities.http("POST", state["url"] + "/hit", json={"x": 1}, timeout=state.get("timeout", 5.0))
    except ActivityError as exc:
        return ctx.result({**state, "error": str(exc)})
    return ctx.result({**state, "status": resp["status"], "body": resp["body"]})


@node("a_http_retry", retry=RetryPolicy(max_attempts=2, backoff=0.01))
def a_http_retry(state: dict[str, Any], ctx: Any) -> Any:
    """A request, then a failure on the first attempt: the retry must replay the request."""
    resp = ctx.activities.http("POST", state["url"] + "/retry", json={"x": 1})
    if ctx.attempt == 1:
        raise ConnectionError("the node failed after its request was made")
    return ctx.result({**state, "body": resp["body"], "attempt": ctx.attempt})


@node("a_now_rand")
def a_now_rand(state: dict[str, Any], ctx: Any) -> Any:
    acts = ctx.activities
    return ctx.result(
        {
            **state,
            "now": acts.now().isoformat(),
            "r1": acts.rand(),
            "r2": acts.rand(),
            "k": acts.randint(1, 1_000_000),
        }
    )


@node("a_artifacts")
def a_artifacts(state: dict[str, Any], ctx: Any) -> Any:
    ref = ctx.activities.write_artifact(state["name"], state["content"])
    text = ctx.activities.read_artifact(state["name"])
    return ctx.result(
        {
            **state,
            "ref": ref,
            "text": text,
            "text_sha256": hashlib.sha256(text.encode()).hexdigest(),
        }
    )


@node("a_read_artifact")
def a_read_artifact(state: dict[str, Any], ctx: Any) -> Any:
    try:
        text = ctx.activities.read_artifact(state["name"])
    except ActivityError as exc:
        return ctx.result({**state, "error": str(exc)})
    return ctx.result({**state, "text": text})


@node("a_db_query")
def a_db_query(state: dict[str, Any], ctx: Any) -> Any:
    try:
        result = ctx.activities.db_query(state["sql"], state.get("params"))
    except ActivityError as exc:
        return ctx.result({**state, "error": str(exc)})
    return ctx.result({**state, "result": result})


@node("a_a2a")
def a_a2a(state: dict[str, Any], ctx: Any) -> Any:
    try:
        answer = ctx.activities.send_a2a(state["specialist"], state.get("task", "heal"), state.get("payload"))
    except ActivityError as exc:
        return ctx.result({**state, "error": str(exc)})
    return ctx.result({**state, "answer": answer})


graph("a-http", entry="a_http", edges=[("a_http", "a_http", "again"), ("a_http", END, "done")])
graph("a-http-catch", entry="a_http_catch", edges=[("a_http_catch", END)])
graph("a-http-retry", entry="a_http_retry", edges=[("a_http_retry", END)])
graph("a-now-rand", entry="a_now_rand", edges=[("a_now_rand", END)])
graph("a-artifacts", entry="a_artifacts", edges=[("a_artifacts", END)])
graph("a-read-artifact", entry="a_read_artifact", edges=[("a_read_artifact", END)])
graph("a-db-query", entry="a_db_query", edges=[("a_db_query", END)])
graph("a-a2a", entry="a_a2a", edges=[("a_a2a", END)])
