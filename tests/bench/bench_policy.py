"""Policy cost: the median Rego evaluation per activity, and what policies add to a step.

1. The compiled bundle evaluated alone (``PolicyEngine.evaluate``) and through the
   executor's hook (``PolicyEngine.__call__``: input building included), for a few
   activity shapes; the registry is cached, as it is between TTL refreshes.
2. A 20-step graph whose node does two activities per step (``now`` and ``rand``),
   executed by the Executor with the ORM checkpointer on PostgreSQL, with and
   without ``policy=PolicyEngine()``, alternating runs so drift hits both alike.
"""

from __future__ import annotations

import itertools
import statistics
import time
from types import SimpleNamespace
from typing import Any

from runs.engine.plugins import NO_POLICY
from tests.bench.common import describe, header, start_event_loop

EVALS = 5000
RUNS = 40
STEPS = 20

SHAPES: dict[str, tuple[str, dict[str, Any], int]] = {
    "now": ("now", {}, 2),
    "http": ("http", {"method": "GET", "url": "http://x/health", "headers": {}, "json": None, "params": {}}, 80),
    "send_a2a": (
        "send_a2a",
        {"specialist": "healer", "task": "heal", "payload": {"service": "checkout", "write_scope": "healing/checkout"}},
        120,
    ),
    "send_a2a+fields": (
        "send_a2a",
        {"specialist": "healer", "task": "heal", "payload": {"fields": ["service", "latency", "email"]}},
        90,
    ),
}


def _register_graph() -> None:
    from runs.engine import END, graph, node
    from runs.engine.graph import GRAPHS

    if GRAPHS.get("b-policy") is not None:
        return

    @node("b_policy")
    def b_policy(state: dict[str, Any], ctx: Any) -> Any:
        ctx.activities.now()
        ctx.activities.rand()
        i = state.get("i", 0) + 1
        return ctx.result({**state, "i": i}, edge="again" if i < state["steps"] else "done")

    graph("b-policy", entry="b_policy", edges=[("b_policy", "b_policy", "again"), ("b_policy", END, "done")])


def evaluation_times() -> dict[str, tuple[list[float], list[float], list[float]]]:
    from approvals.policy import PolicyEngine, policy_input

    engine = PolicyEngine(registry=lambda: ["healer"], registry_ttl=3600, record=False)
    ctx = SimpleNamespace(run=SimpleNamespace(context={"role": "operator"}, run_id=0), step=0)
    out: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for name, (kind, request, size) in SHAPES.items():
        inp = policy_input(kind, request, size=size, role="operator")
        payload = {"request": request, "size": size}
        denied = bool(engine.evaluate(inp))
        evals, cached, hooks = [], [], []
        for _ in range(EVALS):
            t0 = time.perf_counter()
            engine.evaluate_uncached(inp)
            evals.append((time.perf_counter() - t0) * 1000)
        for _ in range(EVALS):
            t0 = time.perf_counter()
            engine.evaluate(inp)
            cached.append((time.perf_counter() - t0) * 1000)
        for _ in range(EVALS):
            t0 = time.perf_counter()
            try:
                engine(kind, payload, ctx)  # type: ignore[arg-type]
            except Exception:
                if not denied:
                    raise
            hooks.append((time.perf_counter() - t0) * 1000)
        out[name + (" (denied)" if denied else "")] = (evals, cached, hooks)
    return out


def step_times(policy: Any) -> list[float]:
    from runs.engine.executor import Executor
    from runs.services.leases import run_claim
    from runs.services.run_store import DjangoCheckpointer
    from runs.services.runs import run_start

    checkpointer = DjangoCheckpointer(owner="bench", abort_flag=lambda run_id: False)
    run = run_start(graph_name="b-policy", data={"steps": STEPS}, role="operator")
    run_claim(run_id=run.pk, owner="bench")
    marks: list[float] = [time.perf_counter()]
    executor = Executor(
        checkpointer, policy=policy, on_step=lambda run_id, rec, marks=marks: marks.append(time.perf_counter())
    )
    try:
        executor.run(run.pk)
    finally:
        executor.close()
    return [(b - a) * 1000 for a, b in itertools.pairwise(marks[1:])]


def main(url: str) -> dict[str, float]:
    from approvals.policy import PolicyEngine

    header("Policies: Rego (regopy bundle) evaluation per activity, and the per-step overhead")
    start_event_loop()
    _register_graph()
    results: dict[str, float] = {}
    times = evaluation_times()
    for name, (evals, cached, hooks) in times.items():
        print(f"Rego evaluation {name:<24} {describe(evals)}")
        print(f"  cached input  {name:<24} {describe(cached)}")
        print(f"  executor hook {name:<24} {describe(hooks)}")
        results[f"eval_{name}_ms"] = statistics.median(evals)
    all_evals = [t for evals, _, _ in times.values() for t in evals]
    print(
        f"median Rego evaluation per activity (uncached), all shapes: {statistics.median(all_evals):.4f} ms "
        "(target <= 0.2 ms)"
    )

    policy = PolicyEngine(registry_ttl=5.0)
    uncached = PolicyEngine(registry_ttl=5.0, cache_size=0)
    in_run: list[float] = []

    def timed(kind: str, payload: dict[str, Any], ctx: Any) -> None:
        t0 = time.perf_counter()
        try:
            uncached(kind, payload, ctx)
        finally:
            in_run.append((time.perf_counter() - t0) * 1000)

    for p in (NO_POLICY, policy, timed):  # warm-up
        step_times(p)
    in_run.clear()
    without: list[float] = []
    with_policy: list[float] = []
    with_uncached: list[float] = []
    for _ in range(RUNS):
        without.extend(step_times(NO_POLICY))
        with_policy.extend(step_times(policy))
        with_uncached.extend(step_times(timed))
    base, gated, gated_uncached = (statistics.median(x) for x in (without, with_policy, with_uncached))
    print(f"executor hook inside real runs, cache off: {describe(in_run)}")
    print(f"step without policies (2 activities per step): {describe(without)}")
    print(f"step with policies    (2 activities per step): {describe(with_policy)}")
    print(f"step with policies, decision cache off:         {describe(with_uncached)}")
    print(
        f"per-step overhead of policies: {gated - base:+.3f} ms ({(gated / base - 1) * 100:+.1f}%); "
        f"cache off {gated_uncached - base:+.3f} ms ({(gated_uncached / base - 1) * 100:+.1f}%); "
        f"bundle builds: {policy.builds}"
    )
    results.update(
        step_without_ms=base,
        step_with_ms=gated,
        per_step_overhead_ms=gated - base,
        per_step_overhead_uncached_ms=gated_uncached - base,
        hook_in_run_ms=statistics.median(in_run),
    )
    return results
