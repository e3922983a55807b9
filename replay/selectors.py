"""Reads for the replay pages: verify and compare reports shaped for templates, lineage, fork choices."""

from __future__ import annotations

from typing import Any

from django.db.models import Q, QuerySet

from replay.services import CompareReport, StepCheck, VerifyReport, run_compare, run_verify
from runs.diffing import MISSING
from runs.engine.graph import END
from runs.engine.redaction import redact
from runs.engine.validation import route
from runs.llm.conversation import conversation_of
from runs.llm.providers import KIND as LLM_KIND
from runs.models import Activity, Graph, Run, Step
from runs.selectors import activity_view
from runs.services.blobs import blob_load
from runs.services.run_store import step_states

# What each divergence cause means, in the words the run page shows.
CAUSES: dict[str, tuple[str, str]] = {
    "code_changed": (
        "The node's code changed",
        "The node's source no longer hashes to the source recorded with the run's graph version.",
    ),
    "activity_changed": (
        "The node asked for a different activity",
        "Re-executed against the recorded activities, the node requested something other than what was recorded.",
    ),
    "prompt_changed": (
        "The model call's prompt changed",
        "Re-executed against the recorded activities, the node sent a model a different request than the recorded "
        "one (its messages, tools or settings): the recorded answer no longer belongs to it.",
    ),
    "non_deterministic": (
        "The node is non-deterministic",
        "Two re-executions disagree: the node reads something that is not recorded (time, randomness, I/O).",
    ),
    "state_changed": (
        "The node produced a different state",
        "The node ran without error against the recorded activities but its result differs from the recorded one.",
    ),
    "node_error": ("The node now fails", "Re-executed against the recorded activities, the node raises an error."),
    "node_missing": ("The node is not installed", "This installation has no node registered under that name."),
    "input_changed": (
        "The input differs",
        "The state before this step does not hash to the input hash recorded with the step.",
    ),
}
STATUS_LABELS = {"match": "verified", "mismatch": "diverged", "unchecked": "not checked"}


def _diff_rows(diff: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """replay.diffing rows with an op for display: added, removed or changed."""
    rows = []
    for d in diff:
        op = "added" if d["before"] == MISSING else "removed" if d["after"] == MISSING else "changed"
        rows.append({**d, "op": op})
    return rows


def _divergence(check: StepCheck) -> dict[str, Any]:
    title, explanation = CAUSES.get(check.cause, (check.cause or "Diverged", ""))
    detail = check.detail
    requests = None
    if "recorded" in detail or "requested" in detail:
        requests = {"seq": detail.get("seq"), "recorded": detail.get("recorded"), "requested": detail.get("requested")}
    return {
        "index": check.index,
        "node": check.node,
        "cause": check.cause,
        "title": title,
        "explanation": explanation,
        "message": detail.get("message", ""),
        "code": detail.get("code_changed"),
        "requests": requests,
        "diff": _diff_rows(detail.get("diff", [])),
        "reexecution_diff": _diff_rows(detail.get("diff_between_reexecutions", [])),
        "prompt_diff": _diff_rows(detail.get("prompt_diff", [])),
        "edge": detail.get("edge"),
    }


def verify_view(*, run: Run) -> dict[str, Any]:
    """Re-execute the run (replay.services.run_verify, no effects) and shape the report for the run page."""
    report: VerifyReport = run_verify(run=run)
    steps = [
        {"index": c.index, "node": c.node, "status": c.status, "label": STATUS_LABELS[c.status], "cause": c.cause}
        for c in report.steps
    ]
    counts = {status: sum(1 for c in report.steps if c.status == status) for status in STATUS_LABELS}
    return {
        "trace_id": report.trace_id,
        "ok": report.ok,
        "steps": steps,
        "counts": counts,
        "first": _divergence(report.first_divergence) if report.first_divergence else None,
    }


def history_states(*, run: Run) -> dict[int, Any]:
    """The state after every step of the run's history; a fork's steps up to its fork step come from its parent."""
    states = step_states(run_id=run.pk)
    if run.parent_id is None or run.parent_step is None:
        return states
    parent = Run.objects.get(pk=run.parent_id)
    inherited = {i: s for i, s in history_states(run=parent).items() if i <= run.parent_step}
    return {**inherited, **{i: s for i, s in states.items() if i > run.parent_step}}


def compare_view(*, left: Run, right: Run, step: str = "") -> dict[str, Any]:
    """Two runs aligned step by step (replay.services.run_compare) with both states at every pair.

    ``position`` and ``selected`` are the aligned step to show: ``step`` when it is a number, else the
    first divergence, else the first step.
    """
    report: CompareReport = run_compare(left=left, right=right)
    left_states, right_states = history_states(run=left), history_states(run=right)
    left_llm, right_llm = _conversations(left), _conversations(right)
    pairs = []
    first_position = None
    for position, p in enumerate(report.pairs):
        if not p.match and first_position is None:
            first_position = position
        pairs.append(
            {
                "position": position,
                "left": p.left,
                "right": p.right,
                "node": p.node,
                "match": p.match,
                "diff": _diff_rows(p.diff),
                "left_state": redact(left_states.get(p.left)) if p.left is not None else None,
                "right_state": redact(right_states.get(p.right)) if p.right is not None else None,
                # The model calls of each side's step, as chats, side by side.
                "left_llm": left_llm.get(p.left, []) if p.left is not None else [],
                "right_llm": right_llm.get(p.right, []) if p.right is not None else [],
            }
        )
    first = report.first_divergence
    position = (first_position or 0) if not step.isdigit() else min(int(step), max(len(pairs) - 1, 0))
    return {
        "position": position,
        "selected": pairs[position] if pairs else None,
        "left": _run_summary(left),
        "right": _run_summary(right),
        "match_percent": report.match_percent,
        "matched": sum(1 for p in report.pairs if p.match),
        "first": None
        if first is None
        else {"position": first_position, "left": first.left, "right": first.right, "node": first.node},
        "pairs": pairs,
    }


def _conversations(run: Run) -> dict[int, list[dict[str, Any]]]:
    """The run's model calls as chats (runs.llm.conversation), by step."""
    out: dict[int, list[dict[str, Any]]] = {}
    for a in Activity.objects.filter(run=run, type=LLM_KIND).order_by("step", "seq"):
        view = conversation_of({**activity_view(a), "response": blob_load(a.response)})
        if view is not None:
            out.setdefault(a.step, []).append({**view, "seq": a.seq})
    return out


def _run_summary(run: Run) -> dict[str, Any]:
    return {
        "trace_id": run.trace_id,
        "graph": run.graph.name,
        "version": run.graph.version,
        "status": run.status,
        "steps": Step.objects.filter(run=run).count(),
        "parent": run.parent.trace_id if run.parent_id and run.parent else None,
        "parent_step": run.parent_step,
    }


def run_find(*, trace_id: str) -> Run | None:
    return Run.objects.select_related("graph", "parent").filter(trace_id=trace_id).first()


def recent_runs(*, limit: int = 50) -> QuerySet[Run]:
    """Recent runs for the compare form's suggestions."""
    return Run.objects.select_related("graph").order_by("-created_at", "-id")[:limit]


def fork_versions(*, run: Run) -> list[int]:
    """The graph versions a fork of ``run`` may run on: its own and every newer one (an imported run's
    version is history: any published version of its graph, and its own)."""
    versions = Graph.objects.filter(name=run.graph.name)
    if run.graph.origin == Graph.ORIGIN_IMPORT:
        versions = versions.filter(Q(pk=run.graph.pk) | ~Q(origin=Graph.ORIGIN_IMPORT))
    else:
        versions = versions.filter(version__gte=run.graph.version)
    return list(versions.order_by("version").values_list("version", flat=True))


def fork_steps(*, run: Run) -> list[tuple[int, str]]:
    """(index, node) of the run's own steps: the places a fork can start after."""
    return list(Step.objects.filter(run=run).order_by("index").values_list("index", "node"))


def fork_continuation(*, run: Run, step: int) -> dict[str, Any]:
    """Where a fork after ``step`` continues on the run's own version: the next node, and whether that is the end."""
    row = Step.objects.filter(run=run, index=step).values_list("node", "edge").first()
    if row is None:
        return {"node": "", "ends": False}
    try:
        target = route(run.graph.definition, row[0], row[1])
    except ValueError:
        return {"node": "", "ends": False}
    return {"node": target, "ends": target == END}
