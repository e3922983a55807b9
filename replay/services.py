"""Replay: a run's steps, the state at step N, verification, comparison and forks.

The CLI (``manage.py replay``), the pages and the API all call these.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction

from runs.diffing import pairs as state_diff
from runs.engine.composition import FanOut
from runs.engine.errors import CMOError, NotJSONError
from runs.engine.graph import END, NODES
from runs.engine.hashing import json_hash, normalize_text
from runs.engine.reexecute import Replayed, reexecute
from runs.engine.secrets import SecretInState, refuse_secrets
from runs.engine.stores import ActivityRecord, RunSnapshot
from runs.engine.validation import route
from runs.llm.providers import KIND as LLM_KIND
from runs.models import Activity, Graph, Run, RunEvent, Step
from runs.selectors import activity_view
from runs.services.events import run_event_add
from runs.services.graphs import GraphNotRunnable, graph_run_refusal
from runs.services.run_store import activity_record, run_snapshot, step_state, step_states
from runs.services.runs import actor_name, run_create
from runs.services.spawn import branches_create


class ReplayError(CMOError, ValueError):
    """A replay request that cannot be served (no such step, a fork past the end, ...)."""

    status, code = 422, "replay_refused"


def _activities_by_step(run: Run) -> dict[int, dict[int, ActivityRecord]]:
    grouped: dict[int, dict[int, ActivityRecord]] = {}
    for a in Activity.objects.filter(run=run).order_by("step", "seq"):
        grouped.setdefault(a.step, {})[a.seq] = activity_record(a)
    return grouped


def run_steps(*, run: Run) -> list[dict[str, Any]]:
    """The run's steps for a table: node, edge, hashes, duration and activities."""
    grouped = _activities_by_step(run)
    rows = []
    for s in Step.objects.filter(run=run).order_by("index"):
        acts = grouped.get(s.index, {})
        rows.append(
            {
                "index": s.index,
                "node": s.node,
                "attempt": s.attempt,
                "edge": s.edge,
                "state_hash": s.state_hash,
                "input_hash": s.input_hash,
                "output_hash": s.output_hash,
                "duration_ms": round(s.duration_ms, 3),
                "error": s.error,
                "activities": [activity_view(a) for a in acts.values()],
            }
        )
    return rows


def replay_to(*, run: Run, index: int) -> dict[str, Any]:
    """The state after step ``index`` and that step's activities, from the checkpoints."""
    states = step_states(run_id=run.pk)
    if index not in states:
        known = f"{min(states)}..{max(states)}" if states else "none"
        raise ReplayError(f"run {run.trace_id} has no step {index} (steps: {known})")
    step = Step.objects.get(run=run, index=index)
    acts = _activities_by_step(run).get(index, {})
    return {
        "trace_id": run.trace_id,
        "index": index,
        "node": step.node,
        "edge": step.edge,
        "state": states[index],
        "state_hash": step.state_hash,
        "activities": [activity_view(a) for a in acts.values()],
    }


# -- verification -------------------------------------------------------------------


@dataclass
class StepCheck:
    index: int
    node: str
    status: str  # "match", "mismatch", "unchecked"
    cause: str = ""
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class VerifyReport:
    trace_id: str
    ok: bool
    steps: list[StepCheck]
    first_divergence: StepCheck | None
    # The reports of the runs it started (its branches and children), verified the same way.
    spawned: list[VerifyReport] = field(default_factory=list)
    kind: str = "run"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _snapshot(run: Run) -> RunSnapshot:
    """Verification re-executes steps one by one; the position fields are per step, not the run's."""
    return replace(run_snapshot(run, state=None), step_index=0, node=None, attempt=1, deadline=None)


def _latest_version(name: str) -> int | None:
    latest = Graph.objects.filter(name=name).order_by("-version").values_list("version", flat=True).first()
    return int(latest) if latest is not None else None


def run_verify(*, run: Run) -> VerifyReport:
    """Re-execute every step against its recorded activities (no effects) and compare hashes.

    Stops at the first divergence and names its cause: the node's code changed,
    it asked for a different (or a new) activity, it is non-deterministic (two
    re-executions disagree), it produced a different state, or it fanned out to
    different branches. The runs it started (branches, children) are verified too,
    each in its own report under ``spawned``; the whole is ok only if every one is.
    """
    states = step_states(run_id=run.pk)
    grouped = _activities_by_step(run)
    snapshot = _snapshot(run)
    sent = _sent_branches(run)
    checks: list[StepCheck] = []
    first: StepCheck | None = None
    previous_state: Any = run.input
    for step in Step.objects.filter(run=run).order_by("index"):
        if first is not None:
            checks.append(StepCheck(step.index, step.node, "unchecked"))
            continue
        check = _verify_step(run, snapshot, step, previous_state, grouped.get(step.index, {}), sent.get(step.index))
        checks.append(check)
        if check.status == "mismatch":
            first = check
        previous_state = states[step.index]
    spawned = [run_verify(run=r) for r in Run.objects.filter(spawned_by=run).order_by("spawn_step", "spawn_seq")]
    return VerifyReport(
        trace_id=run.trace_id,
        ok=first is None and all(r.ok for r in spawned),
        steps=checks,
        first_divergence=first,
        spawned=spawned,
        kind=run.kind,
    )


def _sent_branches(run: Run) -> dict[int, list[tuple[str, str]]]:
    """For each step of ``run`` that fanned out by Sends: its branches' (start node, input hash), in order."""
    dynamic = set(RunEvent.objects.filter(run=run, kind="fanout", detail__dynamic=True).values_list("step", flat=True))
    sent: dict[int, list[tuple[str, str]]] = {step: [] for step in dynamic if step is not None}
    branches = Run.objects.filter(spawned_by=run, kind=Run.KIND_BRANCH, spawn_step__in=list(sent))
    for b in branches.order_by("spawn_step", "spawn_seq").only("spawn_step", "context", "node", "input"):
        assert b.spawn_step is not None
        sent[b.spawn_step].append((str(b.context.get("start") or b.node), json_hash(b.input)))
    return sent


def _verify_step(
    run: Run,
    snapshot: RunSnapshot,
    step: Step,
    input_state: Any,
    records: dict[int, ActivityRecord],
    sent: list[tuple[str, str]] | None = None,
) -> StepCheck:
    spec = NODES.get(step.node)
    if spec is None:
        return StepCheck(
            step.index,
            step.node,
            "mismatch",
            "node_missing",
            {"message": f"node {step.node!r} is not registered in this installation"},
        )
    # The code the step ran with: its own record (after a move to another version, older steps ran other code),
    # else its run's graph version's.
    version_hash = run.graph.node_hashes.get(step.node, "")
    recorded_hash = step.code_hash or version_hash
    if version_hash.startswith(recorded_hash):
        recorded_hash = version_hash  # the step ran its version's code: name it in full
    code = {}
    if recorded_hash and not spec.source_hash.startswith(recorded_hash):
        code = {
            "recorded_source_hash": recorded_hash,
            "current_source_hash": spec.source_hash,
            "run_graph_version": run.graph.version,
            "latest_graph_version": _latest_version(run.graph.name),
        }
    if json_hash(input_state) != step.input_hash:
        return StepCheck(
            step.index,
            step.node,
            "mismatch",
            "input_changed",
            {"message": "the state before this step does not hash to the recorded input hash"},
        )
    first = reexecute(spec, snapshot=snapshot, step=step, input_state=input_state, records=records)
    if _matches(step, first, records) and (step.error or first.sends == sent):
        return StepCheck(step.index, step.node, "match")
    if _matches(step, first, records):
        return _fanout_changed(step, first.sends, sent, code)
    return _explain(run, snapshot, step, input_state, records, first, code)


def _fanout_changed(
    step: Step, replayed: list[tuple[str, str]] | None, recorded: list[tuple[str, str]] | None, code: dict[str, Any]
) -> StepCheck:
    def described(sends: list[tuple[str, str]] | None) -> str:
        if sends is None:
            return "no branches"
        return f"{len(sends)} branches ({', '.join(sorted({n for n, _ in sends})) or 'none'})"

    detail: dict[str, Any] = {
        "message": f"the node now sends {described(replayed)}; the run sent {described(recorded)}"
        + (
            ""
            if replayed is None or recorded is None or len(replayed) != len(recorded)
            else ": the same nodes, different inputs"
        ),
        "recorded_sends": [list(s) for s in recorded or []],
        "replayed_sends": [list(s) for s in replayed or []],
    }
    if code:
        detail["code_changed"] = code
    return StepCheck(step.index, step.node, "mismatch", "fanout_changed", detail)


def _matches(step: Step, replayed: Replayed, records: dict[int, ActivityRecord]) -> bool:
    if step.error:
        return replayed.error_kind == "node_error"
    return (
        not replayed.error
        and replayed.state_hash == step.state_hash
        and replayed.output_hash == step.output_hash
        and replayed.edge == step.edge
        and replayed.activities_used == len(records)
    )


def _explain(
    run: Run,
    snapshot: RunSnapshot,
    step: Step,
    input_state: Any,
    records: dict[int, ActivityRecord],
    first: Replayed,
    code: dict[str, Any],
) -> StepCheck:
    detail: dict[str, Any] = {}
    if code:
        detail["code_changed"] = code
    spec = NODES.get(step.node)
    assert spec is not None
    second = reexecute(spec, snapshot=snapshot, step=step, input_state=input_state, records=records)
    if (first.state_hash, first.error, first.edge) != (second.state_hash, second.error, second.edge):
        detail["message"] = "two re-executions of the node disagree: it reads something that is not recorded"
        detail["diff_between_reexecutions"] = state_diff(first.state, second.state)
        return StepCheck(step.index, step.node, "mismatch", "non_deterministic", detail)
    if first.error_kind == "non_determinism":
        recorded, requested = first.mismatch.get("recorded") or {}, first.mismatch.get("requested") or {}
        if recorded.get("type") == requested.get("type") == LLM_KIND:
            detail.update(message="the model call's prompt changed", **first.mismatch)
            detail["prompt_diff"] = state_diff(recorded.get("request"), requested.get("request"))
            return StepCheck(step.index, step.node, "mismatch", "prompt_changed", detail)
        detail.update(message="the node asked for a different activity than the one recorded", **first.mismatch)
        return StepCheck(step.index, step.node, "mismatch", "activity_changed", detail)
    if first.error_kind == "replay_miss" or first.activities_used != len(records):
        detail.update(
            message=first.error
            or (f"the node used {first.activities_used} activities; the run recorded {len(records)}")
        )
        return StepCheck(step.index, step.node, "mismatch", "activity_changed", detail)
    if first.error:
        detail["message"] = f"the node now fails: {first.error}"
        return StepCheck(step.index, step.node, "mismatch", "code_changed" if code else "node_error", detail)
    detail["diff"] = state_diff(step_state(run_id=run.pk, index=step.index), first.state)
    if first.edge != step.edge:
        detail["edge"] = {"recorded": step.edge, "replayed": first.edge}
    detail["message"] = "the node produced a different result"
    return StepCheck(step.index, step.node, "mismatch", "code_changed" if code else "state_changed", detail)


# -- comparison ---------------------------------------------------------------------


@dataclass
class ComparePair:
    left: int | None
    right: int | None
    node: str
    match: bool
    diff: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CompareReport:
    left: str
    right: str
    match_percent: float
    first_divergence: ComparePair | None
    pairs: list[ComparePair]
    # The runs each started, paired by their place (runs.engine.composition): each pair compared the same way.
    spawned: list[SpawnedPair] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SpawnedPair:
    place: str  # e.g. "fan-out 1, branch 2 (summarize)" or "child 1 (incident-healing)"
    left: str | None
    right: str | None
    report: CompareReport | None = None


def _history(run: Run) -> list[tuple[int, str, str, Any]]:
    """(index, node, state hash, state) of every step of the run's history, a fork's inherited steps included."""
    own = list(Step.objects.filter(run=run).order_by("index").values_list("index", "node", "state_hash"))
    states = step_states(run_id=run.pk)
    history = [(i, n, h, states[i]) for i, n, h in own]
    if run.parent_id is not None and run.parent_step is not None:
        parent = Run.objects.get(pk=run.parent_id)
        inherited = [s for s in _history(parent) if s[0] <= run.parent_step]
        history = inherited + [s for s in history if s[0] > run.parent_step]
    return history


def run_compare(*, left: Run, right: Run) -> CompareReport:
    """Align two runs step by step and compare their states.

    Steps pair by index while both runs ran the same node; from the first index
    where their paths differ, the rest pairs by node sequence (difflib). A fork
    includes the steps it inherited from its parent. Works across graph
    versions: only node names and states are compared.
    """
    a, b = _history(left), _history(right)
    pairs: list[ComparePair] = []
    k = 0
    while k < min(len(a), len(b)) and a[k][0] == b[k][0] and a[k][1] == b[k][1]:
        pairs.append(_pair(a[k], b[k]))
        k += 1
    rest_a, rest_b = a[k:], b[k:]
    matcher = difflib.SequenceMatcher(a=[s[1] for s in rest_a], b=[s[1] for s in rest_b], autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            pairs.extend(_pair(rest_a[i], rest_b[j]) for i, j in zip(range(i1, i2), range(j1, j2), strict=True))
            continue
        pairs.extend(ComparePair(rest_a[i][0], None, rest_a[i][1], False) for i in range(i1, i2))
        pairs.extend(ComparePair(None, rest_b[j][0], rest_b[j][1], False) for j in range(j1, j2))
    total = max(len(a), len(b)) or 1
    matched = sum(1 for p in pairs if p.match)
    first = next((p for p in pairs if not p.match), None)
    return CompareReport(
        left=left.trace_id,
        right=right.trace_id,
        match_percent=round(100.0 * matched / total, 2),
        first_divergence=first,
        pairs=pairs,
        spawned=_compare_spawned(left, right),
    )


def _places(run: Run) -> dict[str, Run]:
    """The runs ``run`` started, keyed by their place: the n-th fan-out's branch k (and its start node), or the
    n-th child (and its graph). Steps may be numbered differently in two runs; places are not."""
    places: dict[str, Run] = {}
    fanouts: dict[int | None, int] = {}
    children = 0
    for r in Run.objects.filter(spawned_by=run).select_related("graph").order_by("spawn_step", "spawn_seq"):
        if r.kind == Run.KIND_BRANCH:
            n = fanouts.setdefault(r.spawn_step, len(fanouts) + 1)
            places[f"fan-out {n}, branch {r.spawn_seq} ({r.context.get('start') or r.node})"] = r
        else:
            children += 1
            places[f"child {children} ({r.graph.name})"] = r
    return places


def _compare_spawned(left: Run, right: Run) -> list[SpawnedPair]:
    a, b = _places(left), _places(right)
    out = []
    for place in list(a) + [p for p in b if p not in a]:
        l_run, r_run = a.get(place), b.get(place)
        report = run_compare(left=l_run, right=r_run) if l_run is not None and r_run is not None else None
        out.append(SpawnedPair(place, l_run.trace_id if l_run else None, r_run.trace_id if r_run else None, report))
    return out


def _pair(a: tuple[int, str, str, Any], b: tuple[int, str, str, Any]) -> ComparePair:
    same = a[2] == b[2]
    return ComparePair(a[0], b[0], a[1], same, [] if same else state_diff(a[3], b[3]))


# -- forks --------------------------------------------------------------------------


def _step_owner(run: Run, index: int) -> Run:
    """The run whose row holds step ``index`` of ``run``'s history: a fork inherits its steps up to its fork step."""
    while run.parent_id is not None and run.parent_step is not None and index <= run.parent_step:
        run = Run.objects.get(pk=run.parent_id)
    return run


def _recorded_fanout(run: Run, step: int, state: Any) -> FanOut | None:
    """The fan-out step ``step`` of ``run`` did, to do again in a fork: the same branches, in order, each with its
    recorded input (a Send's) or, from edges, the fork's state; None if the step did not fan out."""
    event = RunEvent.objects.filter(run=run, kind="fanout", step=step).first()
    if event is None:
        return None
    detail = event.detail if isinstance(event.detail, dict) else {}
    dynamic = bool(detail.get("dynamic"))
    rows = Run.objects.filter(spawned_by=run, kind=Run.KIND_BRANCH, spawn_step=step).order_by("spawn_seq")
    branches = [(str(b.context.get("start") or b.node), b.input if dynamic else state) for b in rows]
    return FanOut(join=str(detail["join"]), branches=branches, limit=detail.get("limit"), dynamic=dynamic)


def run_fork(
    *,
    run: Run,
    step: int,
    state: Any = None,
    version: int | None = None,
    user: AbstractBaseUser | AnonymousUser | None = None,
    role: str = "",
) -> Run:
    """A new run that continues from step ``step`` of ``run``, optionally with edited state.

    The fork executes with the identity and ``role`` of ``user``, who forks it (and is its
    creator): never with the parent's, so forking an admin's run gives an operator no admin
    rights; on a version that came with an imported run, only if ``user`` may run it
    (GraphNotRunnable). One transaction: the new run exists PENDING at step ``step + 1`` with its
    parent recorded, or nothing is written. It runs on ``run``'s graph version
    or a newer version of the same graph.
    """
    owner = _step_owner(run, step)
    try:
        step_row = Step.objects.get(run=owner, index=step)
    except Step.DoesNotExist:
        raise ReplayError(f"run {run.trace_id} has no step {step} to fork from") from None
    graph = run.graph
    if version is not None and version != graph.version:
        # An imported run's version is history; it may continue on any published version of its graph.
        if version < graph.version and graph.origin != Graph.ORIGIN_IMPORT:
            raise ReplayError(f"a fork runs on version {graph.version} or newer, not {version}")
        try:
            graph = Graph.objects.get(name=graph.name, version=version)
        except Graph.DoesNotExist:
            raise ReplayError(f"graph {graph.name!r} has no version {version}") from None
    refusal = graph_run_refusal(graph=graph, user=user, role=role)
    if refusal:
        raise GraphNotRunnable(refusal)
    if state is None:
        state = step_state(run_id=owner.pk, index=step)
    try:
        state, _, _, text = normalize_text(state, what="the forked state")
        refuse_secrets(state, text, what="the forked state")
    except (NotJSONError, SecretInState) as exc:
        raise ReplayError(str(exc)) from None
    fanout = _recorded_fanout(owner, step, state)
    try:
        next_node = fanout.join if fanout is not None else route(graph.definition, step_row.node, step_row.edge)
    except ValueError as exc:
        raise ReplayError(f"cannot continue after step {step} on version {graph.version}: {exc}") from None
    if next_node == END or (run.until_node and next_node == run.until_node):
        ended = "the branch (its join is next)" if next_node != END else "the run"
        raise ReplayError(f"step {step} ended {ended}; there is nothing to continue")
    if next_node not in {n["name"] for n in graph.definition["nodes"]}:
        raise ReplayError(f"node {next_node!r} is not in version {graph.version}")
    actor = actor_name(user)
    with transaction.atomic():
        child = run_create(
            graph=graph,
            data=state,
            seed=run.seed,
            user=user,
            role=role,
            node=next_node,
            step_index=step + 1,
            parent=run,
            parent_step=step,
            history={"forked_from": run.trace_id},
            message=f"forked from {run.trace_id} at step {step} by {actor or 'an anonymous caller'}",
            detail={"parent": run.trace_id, "parent_step": step, "version": graph.version, "role": role},
            # A fork of a branch ends where the branch would have: before its join.
            spawn={"until_node": run.until_node} if run.until_node else None,
        )
        if fanout is not None:  # forked at a fan-out: the fork runs the same branches anew, then joins
            branches_create(parent_id=child.pk, step=step, fanout=fanout)
        run_event_add(
            run_id=run.pk,
            kind="forked",
            step=step,
            actor=actor,
            message=f"forked at step {step} into {child.trace_id}",
            detail={"child": child.trace_id},
        )
    return child
