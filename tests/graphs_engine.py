"""Nodes (``e_*``) and graphs (``e-*``) for the engine unit tests, registered on import.

Effects are counted in :data:`EFFECTS` (by tag) so a test can tell whether a
re-executed step repeated an effect or got the recorded answer back. Tests
flip :data:`E_KNOBS` to make a node behave differently on re-execution and
call :func:`reset` first.
"""

from __future__ import annotations

import collections
import socket
import threading
import time
from typing import Any

from runs.engine import END, RetryPolicy, graph, node
from runs.engine.errors import ActivityError, Suspend

EFFECTS: collections.Counter[str] = collections.Counter()

E_KNOBS: dict[str, Any] = {}

# Set by e_cancelled_activity once its late activity call has returned or raised.
LATE_CALL_DONE = threading.Event()
LATE_CALL_RESULT: dict[str, str] = {}

# Set by e_abort_self; a test's abort_flag reads it.
ABORT_SIGNAL = threading.Event()


def reset() -> None:
    EFFECTS.clear()
    E_KNOBS.clear()
    E_KNOBS.update(
        {
            "crash_at_step": None,  # raise SystemExit (a simulated process crash) after this step's activities
            "nondet_kind": "e_probe",
            "nondet_q": "a",
        }
    )
    LATE_CALL_DONE.clear()
    LATE_CALL_RESULT.clear()
    ABORT_SIGNAL.clear()


reset()


def _effect(tag: str) -> Any:
    def run() -> dict[str, int]:
        EFFECTS[tag] += 1
        return {"count": EFFECTS[tag]}

    return run


def _maybe_crash(ctx: Any) -> None:
    if E_KNOBS["crash_at_step"] is not None and E_KNOBS["crash_at_step"] == ctx.step:
        E_KNOBS["crash_at_step"] = None
        raise SystemExit(f"simulated crash in step {ctx.step}")


# -- plain nodes (validation, routing, versions) ------------------------------------


@node("e_a")
def e_a(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "visited": [*state.get("visited", []), "e_a"]}, edge=state.get("edge"))


@node("e_b")
def e_b(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "visited": [*state.get("visited", []), "e_b"]})


@node("e_c")
def e_c(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "visited": [*state.get("visited", []), "e_c"]})


# -- activities -----------------------------------------------------------------------


@node("e_effects")
def e_effects(state: dict[str, Any], ctx: Any) -> Any:
    """One counted effect, a recorded clock and a seeded random number per step."""
    got = ctx.activities.call("e_effect", {"tag": state.get("tag", "fx"), "i": state.get("i", 0)}, _effect("fx"))
    now = ctx.activities.now().isoformat()
    r = ctx.activities.rand()
    _maybe_crash(ctx)
    i = state.get("i", 0) + 1
    return ctx.result(
        {**state, "i": i, "count": got["count"], "now": now, "r": r},
        edge="again" if i < state.get("steps", 1) else "done",
    )


@node("e_failing_effect")
def e_failing_effect(state: dict[str, Any], ctx: Any) -> Any:
    def boom() -> Any:
        EFFECTS["boom"] += 1
        raise ValueError(f"boom #{EFFECTS['boom']}")

    try:
        ctx.activities.call("e_boom", {"what": "boom"}, boom)
    except ActivityError as exc:
        message = str(exc)
    else:
        message = "no error"
    _maybe_crash(ctx)
    return ctx.result({**state, "message": message})


@node("e_flaky_activity", retry=RetryPolicy(max_attempts=2, backoff=0))
def e_flaky_activity(state: dict[str, Any], ctx: Any) -> Any:
    attempt = ctx.attempt

    def effect() -> Any:
        EFFECTS["flaky"] += 1
        if attempt == 1:
            raise RuntimeError("upstream unavailable")
        return {"ok": attempt}

    got = ctx.activities.call("e_flaky", {"x": 1}, effect)
    return ctx.result({**state, "got": got})


@node("e_nondet", retry=RetryPolicy(max_attempts=3, backoff=0))
def e_nondet(state: dict[str, Any], ctx: Any) -> Any:
    ctx.activities.call(E_KNOBS["nondet_kind"], {"q": E_KNOBS["nondet_q"]}, _effect("nondet"))
    _maybe_crash(ctx)
    return ctx.result(state)


@node("e_nondet_swallow")
def e_nondet_swallow(state: dict[str, Any], ctx: Any) -> Any:
    """Catches every exception around its activity, as careless node code does."""
    try:
        ctx.activities.call(E_KNOBS["nondet_kind"], {"q": E_KNOBS["nondet_q"]}, _effect("nondet"))
    except Exception:  # noqa: BLE001 - the point of this node
        pass
    _maybe_crash(ctx)
    return ctx.result(state)


@node("e_big")
def e_big(state: dict[str, Any], ctx: Any) -> Any:
    nonce = state.get("nonce", "")
    text = ctx.activities.call("e_big", {"size": state["size"], "nonce": nonce}, lambda: nonce + "x" * state["size"])
    return ctx.result({**state, "length": len(text), "head": text[:40]})


@node("e_secret")
def e_secret(state: dict[str, Any], ctx: Any) -> Any:
    got = ctx.activities.call("e_secret", {"q": 1, "api_key": "s3cret-value"}, _effect("secret"))
    return ctx.result({**state, "got": got})


@node("e_suspend")
def e_suspend(state: dict[str, Any], ctx: Any) -> Any:
    def wait() -> Any:
        raise Suspend("waiting for an approval")

    ctx.activities.call("e_wait", {"for": "approval"}, wait)
    return ctx.result(state)


@node("e_abort_self")
def e_abort_self(state: dict[str, Any], ctx: Any) -> Any:
    ABORT_SIGNAL.set()
    ctx.activities.call("e_after_abort", {}, _effect("after_abort"))
    return ctx.result(state)


@node("e_artifact")
def e_artifact(state: dict[str, Any], ctx: Any) -> Any:
    meta = ctx.activities.write_artifact(state["name"], state["content"])
    back = ctx.activities.read_artifact(state["name"])
    return ctx.result({**state, "sha256": meta["sha256"], "size": meta["size"], "back": back})


# -- retries, timeouts ------------------------------------------------------------------


@node("e_long_backoff", retry=RetryPolicy(max_attempts=2, backoff=5.0))
def e_long_backoff(state: dict[str, Any], ctx: Any) -> Any:
    if ctx.attempt == 1:
        raise ConnectionError("first attempt fails")
    return ctx.result({**state, "attempt": ctx.attempt})


@node("e_slow_then_fast", timeout=0.3, retry=RetryPolicy(max_attempts=2, backoff=0))
def e_slow_then_fast(state: dict[str, Any], ctx: Any) -> Any:
    if ctx.attempt == 1:
        time.sleep(0.8)
    return ctx.result({**state, "attempt": ctx.attempt})


@node("e_not_json_retry", retry=RetryPolicy(max_attempts=3, backoff=0))
def e_not_json_retry(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "bad": {1, 2}})


@node("e_cancelled_activity", timeout=0.2)
def e_cancelled_activity(state: dict[str, Any], ctx: Any) -> Any:
    """Outlives its timeout, then tries an activity (which must be refused)."""
    time.sleep(0.5)
    try:
        ctx.activities.call("e_late", {}, _effect("late"))
        LATE_CALL_RESULT["result"] = "ran"
    except BaseException as exc:
        LATE_CALL_RESULT["result"] = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        LATE_CALL_DONE.set()
    return ctx.result(state)


@node("e_timed_activity", timeout=5)
def e_timed_activity(state: dict[str, Any], ctx: Any) -> Any:
    """Activities from the node thread that enforces the timeout."""
    got = ctx.activities.call("e_timed", {"x": 1}, _effect("timed"))
    return ctx.result({**state, "got": got, "now": ctx.activities.now().isoformat()})


@node("e_sleepy")
def e_sleepy(state: dict[str, Any], ctx: Any) -> Any:
    time.sleep(0.15)
    i = state.get("i", 0) + 1
    return ctx.result({**state, "i": i}, edge="again" if i < 20 else "done")


# -- boundary ---------------------------------------------------------------------------


@node("e_read_file")
def e_read_file(state: dict[str, Any], ctx: Any) -> Any:
    with open(state["path"]) as fh:
        text = fh.read()
    with open(state["path"], "rb") as fh:
        raw = fh.read()
    import colorsys  # an import inside a node must keep working

    return ctx.result({**state, "text": text, "bytes": len(raw), "hls": list(colorsys.rgb_to_hls(1, 0, 0))})


@node("e_socket_retry", retry=RetryPolicy(max_attempts=3, backoff=0))
def e_socket_retry(state: dict[str, Any], ctx: Any) -> Any:
    EFFECTS["socket_attempts"] += 1
    with socket.create_connection(("127.0.0.1", 9), timeout=1):
        pass
    return ctx.result(state)


@node("e_socket_timeout", timeout=5)
def e_socket_timeout(state: dict[str, Any], ctx: Any) -> Any:
    with socket.create_connection(("127.0.0.1", 9), timeout=1):
        pass
    return ctx.result(state)


@node("e_os_system")
def e_os_system(state: dict[str, Any], ctx: Any) -> Any:
    import os

    os.system("true")
    return ctx.result(state)


# -- bad output ---------------------------------------------------------------------------


@node("e_bad_output")
def e_bad_output(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result(state, output={"tags": {"a"}})


@node("e_nan")
def e_nan(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "v": float("nan")})


@node("e_circular")
def e_circular(state: dict[str, Any], ctx: Any) -> Any:
    loop: dict[str, Any] = {"name": "loop"}
    loop["self"] = loop
    return ctx.result({**state, "loop": loop})


@node("e_bad_edge")
def e_bad_edge(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result(state, edge=state.get("edge", "nowhere"))


@node("e_raise")
def e_raise(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "v": state["missing"]})


@node("e_mutate")
def e_mutate(state: dict[str, Any], ctx: Any) -> Any:
    state["items"].append("added by the node")
    state["mutated"] = True
    return state


graph("e-two-step", entry="e_a", edges=[("e_a", "e_b"), ("e_b", END)])
graph(
    "e-route",
    entry="e_a",
    nodes=["e_a", "e_b", "e_c"],
    edges=[("e_a", "e_b", "to_b"), ("e_a", "e_c"), ("e_b", END), ("e_c", END)],
)
graph("e-effects", entry="e_effects", edges=[("e_effects", "e_effects", "again"), ("e_effects", END, "done")])
graph("e-failing-effect", entry="e_failing_effect", edges=[("e_failing_effect", END)])
graph("e-flaky-activity", entry="e_flaky_activity", edges=[("e_flaky_activity", END)])
graph("e-nondet", entry="e_nondet", edges=[("e_nondet", END)])
graph("e-nondet-swallow", entry="e_nondet_swallow", edges=[("e_nondet_swallow", END)])
graph("e-big", entry="e_big", edges=[("e_big", END)])
graph("e-secret", entry="e_secret", edges=[("e_secret", END)])
graph("e-suspend", entry="e_suspend", edges=[("e_suspend", END)])
graph("e-abort-self", entry="e_abort_self", edges=[("e_abort_self", END)])
graph("e-artifact", entry="e_artifact", edges=[("e_artifact", END)])
graph("e-long-backoff", entry="e_long_backoff", edges=[("e_long_backoff", END)])
graph("e-slow-then-fast", entry="e_slow_then_fast", edges=[("e_slow_then_fast", END)])
graph("e-not-json-retry", entry="e_not_json_retry", edges=[("e_not_json_retry", END)])
graph("e-cancelled-activity", entry="e_cancelled_activity", edges=[("e_cancelled_activity", END)])
graph("e-timed-activity", entry="e_timed_activity", edges=[("e_timed_activity", END)])
graph(
    "e-run-timeout",
    entry="e_sleepy",
    edges=[("e_sleepy", "e_sleepy", "again"), ("e_sleepy", END, "done")],
    run_timeout=0.4,
)
graph("e-read-file", entry="e_read_file", edges=[("e_read_file", END)])
graph("e-socket-retry", entry="e_socket_retry", edges=[("e_socket_retry", END)])
graph("e-socket-timeout", entry="e_socket_timeout", edges=[("e_socket_timeout", END)])
graph("e-os-system", entry="e_os_system", edges=[("e_os_system", END)])
graph("e-bad-output", entry="e_bad_output", edges=[("e_bad_output", END)])
graph("e-nan", entry="e_nan", edges=[("e_nan", END)])
graph("e-circular", entry="e_circular", edges=[("e_circular", END)])
graph(
    "e-bad-edge",
    entry="e_bad_edge",
    nodes=["e_bad_edge", "e_b"],
    edges=[("e_bad_edge", "e_b", "more"), ("e_bad_edge", END, "done"), ("e_b", END)],
)
graph("e-raise", entry="e_raise", edges=[("e_raise", END)])
graph("e-mutate", entry="e_mutate", edges=[("e_mutate", END)])
