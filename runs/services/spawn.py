"""Runs that runs start: the branches of a fan-out and child runs, and what happens when they end.

A spawned run is an ordinary run (its own steps, activities, hashes and lease; any worker runs it)
that records who started it and where (``spawned_by``, ``spawn_step``, ``spawn_seq``: unique, so a
retried or replayed start never makes a second one). It executes with the identity and role of the
run that started it. The run that waits for spawned runs does so through a pending activity (``join``
for branches, ``wait_runs`` for children), so it holds no worker; whenever a spawned run ends,
:func:`settle` answers the waits it satisfies under the waiting run's row lock, the same lock its
worker takes to suspend, so an answer is never lost. A run that ends takes its spawned runs with it
(aborted), except children started detached. The scheduler's sweep re-settles, should a process die
between a run's end and its settling.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from cmo_site.shared.live import run_wake
from runs.engine import statemachine as sm
from runs.engine.composition import FanOut, Join, branch_update, join_satisfied
from runs.engine.errors import ActivityError
from runs.engine.stores import ACTIVITY_PENDING
from runs.models import Activity, Graph, Run, RunEvent
from runs.services.events import run_event_add
from runs.services.graphs import GraphNotRunnable
from runs.services.runs import InvalidInput, run_abort, run_start
from runs.services.signals import NoPendingActivity, activity_answer

log = logging.getLogger(__name__)
JOIN = "join"
WAIT_RUNS = "wait_runs"
# Branches started at once get a wake-up message each up to this many; the rest are claimed by polling.
WAKE_AT_ONCE = 32


def _branch_seed(seed: int, step: int, branch: int) -> int:
    """Each branch its own seed, derived from its run's: replayable, and different per branch."""
    digest = hashlib.sha256(f"{seed}:{step}:{branch}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 2


# -- branches -------------------------------------------------------------------------------------


def branches_create(*, parent_id: int, step: int, fanout: FanOut) -> list[Run]:
    """The branches of the fan-out at ``step`` (caller holds the transaction that commits that step).

    Beyond ``fanout.limit`` a branch is created held: not runnable until a running one ends.
    """
    parent = Run.objects.select_related("graph").get(pk=parent_id)
    now = timezone.now()
    rows = [
        Run(
            graph=parent.graph,
            input=state,
            state=state,
            seed=_branch_seed(parent.seed, step, i),
            node=node,
            max_steps=parent.max_steps,
            kind=Run.KIND_BRANCH,
            spawned_by=parent,
            spawn_step=step,
            spawn_seq=i,
            until_node=fanout.join,
            held=fanout.limit is not None and i >= fanout.limit,
            created_by_id=parent.created_by_id,
            queued_at=now,
            context={
                "user": parent.context.get("user", ""),
                "role": parent.context.get("role", ""),
                "branch_of": parent.trace_id,
                "branch": i,
                "start": node,
                "fanout_limit": fanout.limit,
            },
        )
        for i, (node, state) in enumerate(fanout.branches)
    ]
    created = Run.objects.bulk_create(rows)
    RunEvent.objects.bulk_create(
        [
            RunEvent(
                run=r,
                kind="created",
                to_status=sm.PENDING,
                actor=r.context["user"],
                message=f"branch {r.spawn_seq} of {parent.trace_id} (step {step}), joining at {fanout.join}",
                detail={"branch_of": parent.trace_id, "step": step, "branch": r.spawn_seq, "held": r.held},
            )
            for r in created
        ]
    )
    run_event_add(
        run_id=parent_id,
        kind="fanout",
        step=step,
        message=f"fanned out to {len(created)} branches, joining at {fanout.join}"
        + (f", at most {fanout.limit} at once" if fanout.limit else ""),
        detail={"branches": len(created), "join": fanout.join, "limit": fanout.limit, "dynamic": fanout.dynamic},
    )
    for r in [r for r in created if not r.held][:WAKE_AT_ONCE]:
        run_wake(r.pk)
    return created


def join_result(*, run_id: int, fanout_step: int, join: Join) -> list[dict[str, Any]] | None:
    """The branches' results for the join after ``fanout_step``, in branch order; None while it must wait.

    Each says what its branch wrote (``update`` and ``before``: runs.engine.composition.branch_update),
    not its whole state. A branch still active when the join has what it needs (the first k) is
    reported ABORTED: it is cancelled as the join is answered.
    """
    rows = Run.objects.filter(spawned_by_id=run_id, spawn_step=fanout_step, kind=Run.KIND_BRANCH)
    if not _join_may_be_satisfied(rows, join):
        return None  # the usual answer while branches run: one COUNT, not every branch's state
    branches = list(
        rows.order_by("spawn_seq").values("trace_id", "spawn_seq", "node", "status", "input", "state", "error")
    )
    if not branches:
        return []
    statuses = [b["status"] if b["status"] in sm.TERMINAL else "" for b in branches]
    if not join_satisfied(statuses, join):
        return None
    results = []
    for b in branches:
        ended = b["status"] in sm.TERMINAL
        update, before = branch_update(b["input"], b["state"]) if b["status"] == sm.COMPLETED else ({}, {})
        results.append(
            {
                "branch": b["spawn_seq"],
                "trace_id": b["trace_id"],
                "node": b["node"],
                "status": b["status"] if ended else sm.ABORTED,
                "update": update,
                "before": before,
                "error": b["error"] if ended else "cancelled: the join had what it needed",
                **({} if ended else {"cancelled": True}),
            }
        )
    return results


def _join_may_be_satisfied(rows: QuerySet[Run], join: Join) -> bool:
    """Whether the join could run, from counts alone (False means wait; True means look at the branches)."""
    counts = rows.aggregate(
        active=Count("pk", filter=Q(status__in=sm.ACTIVE)),
        completed=Count("pk", filter=Q(status=sm.COMPLETED)),
        failed=Count("pk", filter=~Q(status__in=[*sm.ACTIVE, sm.COMPLETED])),
    )
    return (
        counts["active"] == 0
        or (join.errors == "fail" and counts["failed"] > 0)
        or (join.mode == "first" and counts["completed"] >= join.k)
    )


def fanned_out(*, run_id: int, step: int) -> bool:
    """Whether step ``step`` of the run fanned out (to any number of branches, none included)."""
    return RunEvent.objects.filter(run_id=run_id, kind="fanout", step=step).exists()


def _release_held(parent_id: int) -> None:
    """Let held branches run as running ones of their fan-out end (its limit: in the branches' context)."""
    held = Run.objects.filter(spawned_by_id=parent_id, kind=Run.KIND_BRANCH, held=True, status=sm.PENDING)
    for step in sorted({s for s in held.values_list("spawn_step", flat=True) if s is not None}):
        waiting = held.filter(spawn_step=step)
        context = waiting.values_list("context", flat=True).first() or {}
        limit = int(context.get("fanout_limit") or 0)
        active = Run.objects.filter(
            spawned_by_id=parent_id, spawn_step=step, held=False, status__in=sm.ACTIVE
        ).count()
        free = limit - active
        if free <= 0:
            continue
        chosen = list(waiting.order_by("spawn_seq").values_list("pk", flat=True)[:free])
        Run.objects.filter(pk__in=chosen, held=True).update(held=False, queued_at=timezone.now())
        for pk in chosen:
            run_wake(pk)


# -- children -------------------------------------------------------------------------------------


def child_start(
    *, parent_id: int, step: int, seq: int, graph_name: str, version: int | None, data: Any, detached: bool
) -> Run:
    """The child run started at (step, seq) of run ``parent_id``: made once, found again on a re-execution.

    It runs with the parent's identity and role; a graph that does not exist, is not runnable for them,
    or input its schema refuses is an ActivityError naming it (the step fails, nothing is created).
    """
    place = {"spawned_by_id": parent_id, "spawn_step": step, "spawn_seq": seq}
    existing = Run.objects.filter(**place).select_related("graph").first()
    if existing is not None:
        return existing
    parent = Run.objects.select_related("created_by").get(pk=parent_id)
    try:
        return run_start(
            graph_name=graph_name,
            version=version,
            data=data,
            seed=_branch_seed(parent.seed, step, seq),
            user=parent.created_by,
            role=str(parent.context.get("role", "")),
            history={"child_of": parent.trace_id},
            spawn={"kind": Run.KIND_CHILD, "spawned_by": parent, "spawn_step": step, "spawn_seq": seq,
                   "detached": detached},
        )
    except IntegrityError:  # started meanwhile by another execution of the same step
        return Run.objects.select_related("graph").get(**place)
    except (Graph.DoesNotExist, InvalidInput, GraphNotRunnable) as exc:
        raise ActivityError("start_run", f"cannot start a child run of {graph_name!r}: {exc}") from None


def children_result(*, run_id: int, trace_ids: list[str], mode: str) -> list[dict[str, Any]] | None:
    """The children's results for ``wait_runs`` (in the order asked), or None while it must wait.

    Only runs this run started count; ``mode`` "all" waits for every one to end, "any" for the first.
    """
    rows = {
        r["trace_id"]: r
        for r in Run.objects.filter(spawned_by_id=run_id, trace_id__in=trace_ids).values(
            "trace_id", "status", "state", "error", "graph__name"
        )
    }
    ended = [t for t in trace_ids if t in rows and rows[t]["status"] in sm.TERMINAL]
    if not (len(ended) == len(trace_ids) or (mode == "any" and ended)):
        return None
    return [
        {
            "trace_id": t,
            "graph": rows[t]["graph__name"] if t in rows else None,
            "status": rows[t]["status"] if t in rows else "UNKNOWN",
            "state": rows[t]["state"] if t in ended else None,
            "error": rows[t]["error"] if t in ended else ("" if t in rows else "not a run this run started"),
        }
        for t in trace_ids
    ]


# -- when spawned runs end ---------------------------------------------------------------------------


def _waiting_answer(activity: Activity) -> list[dict[str, Any]] | None:
    request = activity.request if isinstance(activity.request, dict) else {}
    if activity.type == JOIN:
        join = Join(mode=str(request.get("mode", "all")), k=int(request.get("k") or 1), errors=str(request["errors"]))
        return join_result(run_id=activity.run_id, fanout_step=int(request.get("fanout_step", -1)), join=join)
    return children_result(
        run_id=activity.run_id, trace_ids=[str(t) for t in request.get("runs", [])], mode=str(request.get("mode"))
    )


def settle(*, run_id: int) -> int:
    """Answer ``run_id``'s waits on spawned runs that are now satisfied, and let held branches run.

    Under the run's row lock (see the module docstring); returns how many waits it answered. A join
    that completes with branches still active (the first k) cancels them. It first looks without the
    lock, so a spawned run ending while most of its siblings still run costs a few reads, not a lock.
    """
    waits = Activity.objects.filter(run_id=run_id, status=ACTIVITY_PENDING, type__in=(JOIN, WAIT_RUNS))
    ready = [a for a in waits if _waiting_answer(a) is not None]
    held = Run.objects.filter(spawned_by_id=run_id, kind=Run.KIND_BRANCH, held=True, status=sm.PENDING).exists()
    if not ready and not held:
        return 0
    answered = 0
    with transaction.atomic():
        run = Run.objects.select_for_update().only("pk", "status").filter(pk=run_id).first()
        if run is None or run.is_terminal:
            return 0
        if held:
            _release_held(run_id)
        for activity in ready:
            result = _waiting_answer(activity)  # again, under the lock: the first k may have grown
            if result is None:
                continue
            try:
                activity_answer(activity=activity, response=result, actor="spawned runs", redacted=False)
            except NoPendingActivity:
                continue
            answered += 1
            if activity.type == JOIN:
                _cancel_rest(run_id, int(activity.request["fanout_step"]))
    return answered


def _cancel_rest(run_id: int, fanout_step: int) -> None:
    for branch in Run.objects.filter(spawned_by_id=run_id, spawn_step=fanout_step, status__in=sm.ACTIVE):
        try:
            run_abort(run=branch, actor="join")
        except sm.InvalidTransition:
            continue


# Who spawned a run, and whether it left spawned runs running (not detached): what run_ended acts on.
_ACTIVE = sorted(sm.ACTIVE)
_ENDED_SQL = f"""
SELECT r.spawned_by_id, EXISTS (
    SELECT 1 FROM runs_run c
     WHERE c.spawned_by_id = r.id AND c.status IN ({", ".join(["%s"] * len(_ACTIVE))}) AND NOT c.detached
) FROM runs_run r WHERE r.id = %s
"""


def run_ended(run_id: int) -> None:
    """After a run ends: abort what it spawned and still runs (not detached children), settle who spawned it."""
    with connection.cursor() as cur:  # one round trip (and no query to compile) for the common case
        cur.execute(_ENDED_SQL, [*_ACTIVE, run_id])
        found = cur.fetchone()
    if found is None:
        return
    spawner, cascade = found
    children = Run.objects.filter(spawned_by_id=run_id, status__in=sm.ACTIVE, detached=False)
    for child in children if cascade else ():
        try:
            run_abort(run=child, actor="cascade")
        except sm.InvalidTransition:
            continue
    if spawner is not None:
        settle(run_id=spawner)


def sweep() -> int:
    """The scheduler's safety net: settle runs waiting on spawned runs, abort what an ended run left running.

    Normally :func:`run_ended` does both at once; this repairs a process that died in between.
    """
    repaired = 0
    waiting = Activity.objects.filter(status=ACTIVITY_PENDING, type__in=(JOIN, WAIT_RUNS)).values_list(
        "run_id", flat=True
    )
    for run_id in sorted(set(waiting)):
        repaired += settle(run_id=run_id)
    orphans = Run.objects.filter(status__in=sm.ACTIVE, detached=False, spawned_by__isnull=False).filter(
        Q(spawned_by__status__in=sm.TERMINAL)
    )
    for child in orphans[:500]:
        try:
            run_abort(run=child, actor="cascade")
            repaired += 1
        except sm.InvalidTransition:
            continue
    return repaired
