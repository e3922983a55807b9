"""Nodes and graphs the tests run (registered on import; workers load them via CMO_GRAPH_MODULES)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
from typing import Any

from runs.engine import END, RetryPolicy, graph, node
from runs.engine.specialists import Retry, specialist

# Tests flip these to make a node behave differently on re-execution.
KNOBS: dict[str, Any] = {"http_path": "/count", "flaky_failures": 0}


@node("t_count")
def t_count(state: dict[str, Any], ctx: Any) -> Any:
    n = state.get("n", 0) + 1
    return ctx.result({**state, "n": n}, edge="again" if n < state.get("target", 3) else "done", output={"n": n})


@node("t_http")
def t_http(state: dict[str, Any], ctx: Any) -> Any:
    resp = ctx.activities.http("POST", state["url"] + KNOBS["http_path"], json={"i": state.get("i", 0)})
    i = state.get("i", 0) + 1
    return ctx.result({**state, "i": i, "last": resp["body"]}, edge="again" if i < state.get("calls", 3) else "done")


@node("t_sleep", timeout=0.5)
def t_sleep(state: dict[str, Any], ctx: Any) -> Any:
    time.sleep(state.get("sleep", 0))
    return ctx.result(state)


@node("t_slow")
def t_slow(state: dict[str, Any], ctx: Any) -> Any:
    """A slow step with no timeout: a run that keeps its worker busy for ``sleep`` seconds."""
    time.sleep(state.get("sleep", 0))
    return ctx.result(state)


@node("t_slow_steps")
def t_slow_steps(state: dict[str, Any], ctx: Any) -> Any:
    """``steps`` steps of ``sleep`` seconds each: a slow run that an abort can stop between steps."""
    time.sleep(state.get("sleep", 0))
    done = state.get("done", 0) + 1
    return ctx.result({**state, "done": done}, edge="again" if done < state.get("steps", 1) else "done")


@node("t_flaky", retry=RetryPolicy(max_attempts=3, backoff=0.01))
def t_flaky(state: dict[str, Any], ctx: Any) -> Any:
    if ctx.attempt <= state.get("fail_times", 0):
        raise ConnectionError(f"flaky failure on attempt {ctx.attempt}")
    return ctx.result({**state, "succeeded_on": ctx.attempt})


@node("t_not_json")
def t_not_json(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "when": dt.datetime(2026, 1, 1)})


@node("t_socket")
def t_socket(state: dict[str, Any], ctx: Any) -> Any:
    with socket.create_connection(("127.0.0.1", state.get("port", 9)), timeout=1):
        pass
    return ctx.result(state)


@node("t_write_file")
def t_write_file(state: dict[str, Any], ctx: Any) -> Any:
    with open(state["path"], "w") as fh:
        fh.write("sneaky")
    return ctx.result(state)


@node("t_subprocess")
def t_subprocess(state: dict[str, Any], ctx: Any) -> Any:
    subprocess.run(["true"], check=False)
    return ctx.result(state)


@node("t_swallow_violation")
def t_swallow_violation(state: dict[str, Any], ctx: Any) -> Any:
    try:
        socket.create_connection(("127.0.0.1", 9), timeout=1)
    except OSError:
        pass
    return ctx.result(state)


@node("t_now_rand")
def t_now_rand(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result(
        {
            **state,
            "now": ctx.activities.now().isoformat(),
            "r": ctx.activities.rand(),
            "k": ctx.activities.randint(1, 6),
        }
    )


@node("t_wait_for_file")
def t_wait_for_file(state: dict[str, Any], ctx: Any) -> Any:
    """Spins (reading is allowed) until a marker appears, so a test can act mid-step."""
    import os

    deadline = time.monotonic() + state.get("max_wait", 10)
    while not os.path.exists(state["marker"]) and time.monotonic() < deadline:
        time.sleep(0.02)
    return ctx.result({**state, "waited": True})


graph(
    "t-count",
    entry="t_count",
    edges=[("t_count", "t_count", "again"), ("t_count", END, "done")],
    input_schema={"type": "object", "properties": {"target": {"type": "integer", "minimum": 1}}},
)
graph("t-http", entry="t_http", edges=[("t_http", "t_http", "again"), ("t_http", END, "done")])
graph("t-sleep", entry="t_sleep", edges=[("t_sleep", END)])
graph("t-slow", entry="t_slow", edges=[("t_slow", END)])
graph(
    "t-slow-steps",
    entry="t_slow_steps",
    edges=[("t_slow_steps", "t_slow_steps", "again"), ("t_slow_steps", END, "done")],
)
graph("t-flaky", entry="t_flaky", edges=[("t_flaky", END)])
graph("t-not-json", entry="t_not_json", edges=[("t_not_json", END)])
graph("t-socket", entry="t_socket", edges=[("t_socket", END)])
graph("t-write-file", entry="t_write_file", edges=[("t_write_file", END)])
graph("t-subprocess", entry="t_subprocess", edges=[("t_subprocess", END)])
graph("t-swallow", entry="t_swallow_violation", edges=[("t_swallow_violation", END)])
graph("t-now-rand", entry="t_now_rand", edges=[("t_now_rand", END)])
graph("t-cycle", entry="t_count", edges=[("t_count", "t_count", "again"), ("t_count", END, "done")], max_steps=5)
graph(
    "t-abort",
    entry="t_wait_for_file",
    nodes=["t_wait_for_file", "t_count"],
    edges=[("t_wait_for_file", "t_count"), ("t_count", "t_count", "again"), ("t_count", END, "done")],
)


@node("t_signal")
def t_signal(state: dict[str, Any], ctx: Any) -> Any:
    before = ctx.activities.now()
    answer = ctx.activities.wait_for_signal("go")
    return ctx.result({**state, "answer": answer, "asked_at": before.isoformat()})


graph(
    "t-signal",
    entry="t_count",
    nodes=["t_count", "t_signal"],
    edges=[("t_count", "t_signal", "done"), ("t_count", "t_count", "again"), ("t_signal", END)],
)


@node("t_grow")
def t_grow(state: dict[str, Any], ctx: Any) -> Any:
    """A large state (payload) that changes by a little each step (counter, log)."""
    if "payload" not in state:
        # Hex digests: a payload that compresses about as badly as real documents.
        chunk = [hashlib.sha256(f"{n}".encode()).hexdigest() * 15 + "0" * 40 for n in range(state.get("kb", 100))]
        state = {**state, "payload": chunk, "log": [], "i": 0}
    i = state["i"] + 1
    log = [*state["log"], f"step {i}: touched record {i * 7 % 100}"]
    return ctx.result({**state, "i": i, "log": log}, edge="again" if i < state.get("steps", 10) else "done")


graph("t-grow", entry="t_grow", edges=[("t_grow", "t_grow", "again"), ("t_grow", END, "done")], max_steps=5000)


@specialist("t-echo", capabilities=["echo"])
def t_echo(task: str, payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """A test specialist: notes each call in a file (shared across processes), may sleep, echoes."""
    if payload.get("log"):
        with open(payload["log"], "a") as fh:
            fh.write(f"{meta['idempotency_key'] if 'idempotency_key' in meta else meta['trace_id']}\n")
    time.sleep(payload.get("sleep", 0))
    return {"echo": payload.get("text", ""), "task": task}


@node("t_ask_specialist")
def t_ask_specialist(state: dict[str, Any], ctx: Any) -> Any:
    before = ctx.activities.now()
    answer = ctx.activities.send_a2a("t-echo", "echo", {k: state[k] for k in ("text", "sleep", "log") if k in state})
    return ctx.result({**state, "answer": answer, "asked_at": before.isoformat()})


graph("t-remote", entry="t_ask_specialist", edges=[("t_ask_specialist", END)])


def _summarise(name: str) -> Any:
    def handle(task: str, payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        """Notes each call (who, which activity) in a shared file, may sleep or fail, then answers."""
        if payload.get("log"):
            with open(payload["log"], "a") as fh:
                fh.write(f"{name} {meta.get('idempotency_key') or meta['trace_id']}\n")
        if name in payload.get("fail", []):
            raise RuntimeError(f"{name} cannot summarise today")
        time.sleep(payload.get("sleep", {}).get(name, 0))
        return {"summary": f"{name}: {payload.get('text', '')}"}

    handle.__name__ = name.replace("-", "_")
    return handle


# Two specialists with one capability: send_a2a by capability picks the first and falls back to the second.
for _name in ("t-sum-a", "t-sum-b"):
    specialist(_name, capabilities=["summarise"])(_summarise(_name))


@node("t_ask_capability")
def t_ask_capability(state: dict[str, Any], ctx: Any) -> Any:
    payload = {k: state[k] for k in ("text", "sleep", "log", "fail") if k in state}
    answer = ctx.activities.send_a2a(task="summarise", payload=payload, capability="summarise",
                                     timeout_seconds=state.get("timeout", 60), max_tries=state.get("tries", 2))
    return ctx.result({**state, "answer": answer})  # fmt: skip


graph("t-capability", entry="t_ask_capability", edges=[("t_ask_capability", END)])


# -- specialists for the replies stream, retries and caps ----------------------------------------

_gauge_lock = threading.Lock()
_gauge = {"now": 0, "max": 0}


@specialist("t-gauge", capabilities=["gauge"])
def t_gauge(task: str, payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Reports the most invocations it has seen at once in this process (the cap test reads it)."""
    with _gauge_lock:
        _gauge["now"] += 1
        _gauge["max"] = max(_gauge["max"], _gauge["now"])
    try:
        time.sleep(payload.get("sleep", 0.3))
    finally:
        with _gauge_lock:
            _gauge["now"] -= 1
    return {"max_seen": _gauge["max"], "n": payload.get("n")}


def _note_decision(notice: dict[str, Any]) -> None:
    folder = os.environ.get("CMO_TEST_NOTICE_DIR")
    if folder:
        with open(os.path.join(folder, f"notice-{notice['approval_id']}.json"), "w") as fh:
            json.dump(notice, fh)


@specialist("t-flaky", capabilities=["flaky"], on_decision=_note_decision)
def t_flaky_specialist(task: str, payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """Asks to be invoked again (with a smaller batch) until attempt ``succeed_on``; never when it is 0."""
    succeed_on = payload.get("succeed_on", 2)
    if succeed_on == 0 or meta["attempt"] < succeed_on:
        raise Retry(
            "upstream busy", after_ms=200, max_attempts=payload.get("max_attempts", 3), modifications={"batch": 10}
        )
    return {"attempt": meta["attempt"], "payload": payload}


@node("t_ask_gauge")
def t_ask_gauge(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result(
        {
            **state,
            "answer": ctx.activities.send_a2a(
                "t-gauge", "hold", {"sleep": state.get("sleep", 0.3), "n": state.get("n")}
            ),
        }
    )


@node("t_ask_flaky")
def t_ask_flaky(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "answer": ctx.activities.send_a2a("t-flaky", "work", {"batch": 100, **state})})


graph("t-gauged", entry="t_ask_gauge", edges=[("t_ask_gauge", END)])
graph("t-flaky-call", entry="t_ask_flaky", edges=[("t_ask_flaky", END)])


@node("t_flaky_then_approve")
def t_flaky_then_approve(state: dict[str, Any], ctx: Any) -> Any:
    answer = ctx.activities.send_a2a("t-flaky", "work", {"succeed_on": state.get("succeed_on", 1)})
    decision = ctx.activities.request_approval(
        {"commands": ["sudo systemctl restart api"]}, preview="sudo systemctl restart api"
    )
    return ctx.result({**state, "answer": answer, "decision": decision})


graph("t-flaky-then-approve", entry="t_flaky_then_approve", edges=[("t_flaky_then_approve", END)])
