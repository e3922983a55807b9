"""Nodes and graphs for the regression tests of the review's holes (nodes "h_*", graphs "h-*"); registered on import."""

from __future__ import annotations

import os
import signal
from typing import Any

from runs.engine import END, graph, node
from runs.engine.specialists import specialist

HIGH_RISK = {"api_calls": ["DELETE /v1/releases/42"], "commands": ["rm -rf /srv/releases/42"]}


def _wait(state: dict[str, Any], ctx: Any) -> Any:
    """The waiting call the input names: a signal, an approval or a specialist."""
    kind = state.get("wait", "signal")
    if kind == "approval":
        return ctx.activities.request_approval(HIGH_RISK, preview="rm -rf /srv/releases/42")
    if kind == "a2a":
        return ctx.activities.send_a2a(state["specialist"], "work", {})
    return ctx.activities.wait_for_signal("go")


@node("h_catch_exception")
def h_catch_exception(state: dict[str, Any], ctx: Any) -> Any:
    """Ordinary defensive code: ``except Exception`` must not swallow the engine's suspension."""
    try:
        answer = _wait(state, ctx)
    except Exception as exc:  # noqa: BLE001 - the point of the test
        return ctx.result({**state, "swallowed": type(exc).__name__})
    return ctx.result({**state, "answer": answer})


@node("h_catch_everything")
def h_catch_everything(state: dict[str, Any], ctx: Any) -> Any:
    """Broken code: it catches the signal itself and returns anyway."""
    try:
        answer = _wait(state, ctx)
    except BaseException as exc:  # noqa: BLE001 - the point of the test
        if state.get("then_call_again"):
            ctx.activities.now()  # the signal comes back on the next activity
        return ctx.result({**state, "swallowed": type(exc).__name__})
    return ctx.result({**state, "answer": answer})


graph("h-catch-exception", entry="h_catch_exception", edges=[("h_catch_exception", END)])
graph("h-catch-everything", entry="h_catch_everything", edges=[("h_catch_everything", END)])


BULK_RECEIVED: list[int] = []


@specialist("h-bulk", capabilities=["bulk"])
def h_bulk_specialist(task: str, payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    BULK_RECEIVED.append(len(payload.get("session_token", "")))
    return {"ok": True}


@node("h_send_bulk")
def h_send_bulk(state: dict[str, Any], ctx: Any) -> Any:
    """A large payload under a secret-named key: the record keeps "[redacted]", the specialist gets it all."""
    blob = "x" * state["size"]
    if state.get("as_artifact"):
        answer = ctx.activities.write_artifact("h/bulk.txt", blob)
    else:
        answer = ctx.activities.send_a2a("h-bulk", "bulk", {"session_token": blob})
    return ctx.result({"size": state["size"], "answer": answer})


graph("h-send-bulk", entry="h_send_bulk", edges=[("h_send_bulk", END)])


@node("h_artifact")
def h_artifact(state: dict[str, Any], ctx: Any) -> Any:
    """Writes (or reads) the artifact the input names."""
    if state.get("read"):
        return ctx.result({**state, "content": ctx.activities.read_artifact(state["name"])})
    return ctx.result({**state, "written": ctx.activities.write_artifact(state["name"], state.get("content", "x"))})


graph("h-artifact", entry="h_artifact", edges=[("h_artifact", END)])



@node("h_prepare")
def h_prepare(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "prepared": True})


@node("h_pii_call")
def h_pii_call(state: dict[str, Any], ctx: Any) -> Any:
    """A specialist call that declares PII: the policies allow it to the admin role only."""
    answer = ctx.activities.send_a2a("h-bulk", "lookup", {"fields": ["email"], "session_token": "t"})
    return ctx.result({**state, "answer": answer})


graph("h-pii", entry="h_prepare", edges=[("h_prepare", "h_pii_call"), ("h_pii_call", END)])


@node("h_poison")
def h_poison(state: dict[str, Any], ctx: Any) -> Any:
    """Kills the worker process that executes it (a segfaulting extension, an OOM kill)."""
    if state.get("kill"):
        os.kill(os.getpid(), signal.SIGKILL)
    return ctx.result(state)


graph("h-poison", entry="h_poison", edges=[("h_poison", END)])
