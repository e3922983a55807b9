"""Deploys: which workers serve which graph versions, and moving a run to another version.

A worker executes a run only when its loaded code is the code of the run's graph version (or a version
its graph declares compatible; runs.engine.versions). Otherwise it gives the run back, which then says
"waiting for a worker with <graph> v<N>", and this worker's claims skip that version. During a rolling
deploy old and new workers run side by side, each taking the runs of its own code. An operator may move
a run that no worker holds to another version of its graph at its current step: the step it is at (and
every later one) runs on that version's code; the steps before keep their records, and the move is a
run event and an audit entry.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from cmo_site.shared.live import run_wake
from runs.engine import statemachine as sm
from runs.engine.errors import CMOError
from runs.engine.versions import version_mismatch
from runs.models import Graph, Run
from runs.services.audit import audit_record
from runs.services.events import run_event_add
from runs.services.graphs import GraphNotRunnable, graph_run_refusal
from runs.services.runs import actor_name


class MoveRefused(CMOError):
    """The run cannot move to that version now (it ended, a worker holds it, or the version lacks its node)."""

    status, code = 409, "move_refused"


def graph_served_here(graph: Graph) -> bool:
    """Whether this process's loaded code may execute runs of ``graph`` (the check runs.engine.versions makes)."""
    return not version_mismatch(graph.name, graph.version, graph.definition, graph.node_hashes)


def served_versions(*, graph_ids: list[int]) -> list[str]:
    """Of ``graph_ids``, the versions this process serves, as "name vN" (for its heartbeat)."""
    rows = Graph.objects.filter(pk__in=graph_ids).order_by("name", "version")
    return [f"{g.name} v{g.version}" for g in rows if graph_served_here(g)]


def versions_in_use() -> list[int]:
    """The graph versions a worker reports on: those with runs not ended, and each graph's latest."""
    active = set(Run.objects.filter(status__in=sm.ACTIVE).order_by().values_list("graph_id", flat=True).distinct())
    newest: dict[str, int] = {}
    for pk, name in Graph.objects.order_by("version").values_list("pk", "name"):
        newest[name] = pk
    return sorted(active | set(newest.values()))


def move_targets(*, run: Run) -> list[int]:
    """The versions ``run`` could move to now (other published versions of its graph that have its node)."""
    if run.is_terminal or (run.lease_owner and run.lease_expires_at and run.lease_expires_at > timezone.now()):
        return []
    versions = Graph.objects.filter(name=run.graph.name).exclude(pk=run.graph_id).exclude(origin=Graph.ORIGIN_IMPORT)
    return [g.version for g in versions.order_by("-version") if _has_node(g, run.node)]


def _has_node(graph: Graph, node: str | None) -> bool:
    return node is None or any(n.get("name") == node for n in graph.definition.get("nodes", []))


def run_move_version(*, run: Run, version: int, user: Any, role: str) -> Run:
    """Move ``run`` (no worker holding it) to ``version`` of its graph at its current step, as ``user``."""
    target = Graph.objects.filter(name=run.graph.name, version=version).first()
    if target is None:
        raise MoveRefused(f"graph {run.graph.name} has no version {version}")
    refusal = graph_run_refusal(graph=target, user=user, role=role)
    if refusal:
        raise GraphNotRunnable(refusal)
    actor = actor_name(user)
    with transaction.atomic():
        locked = Run.objects.select_for_update().select_related("graph").get(pk=run.pk)
        if locked.is_terminal:
            raise MoveRefused(f"run {locked.trace_id} has ended ({locked.status}): fork it instead")
        now = timezone.now()
        if locked.lease_owner and locked.lease_expires_at and locked.lease_expires_at > now:
            raise MoveRefused(f"a worker ({locked.lease_owner}) is executing run {locked.trace_id}; try again")
        if locked.graph_id == target.pk:
            raise MoveRefused(f"run {locked.trace_id} is already on {target.name} v{target.version}")
        if not _has_node(target, locked.node):
            raise MoveRefused(f"{target.name} v{target.version} has no node {locked.node!r}, where the run is")
        before = locked.graph.version
        Run.objects.filter(pk=run.pk).update(graph=target, wait_reason="", updated_at=now)
        detail = {"from_version": before, "to_version": target.version, "step": locked.step_index,
                  "node": locked.node}  # fmt: skip
        run_event_add(
            run_id=run.pk,
            kind="version_moved",
            step=locked.step_index,
            actor=actor,
            message=f"moved from v{before} to v{target.version} at step {locked.step_index} by {actor or 'the system'}",
            detail=detail,
        )
        audit_record(actor=actor, action="run_version_moved", target=f"run:{locked.trace_id}", detail=detail)
        if locked.status != sm.WAITING:
            run_wake(run.pk)
    run.refresh_from_db()
    return run
