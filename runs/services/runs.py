"""Start and abort runs."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import jsonschema
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone

from cmo_site.shared.live import run_wake
from runs.engine import statemachine as sm
from runs.engine.concurrency import NO_SLOT, KeyPathError, Slot, declaration_problems
from runs.engine.concurrency import run_slot as concurrency_slot
from runs.engine.errors import CMOError, NotJSONError
from runs.engine.graph import DEFAULT_MAX_STEPS
from runs.engine.hashing import normalize_text
from runs.engine.secrets import SecretInState, refuse_secrets
from runs.engine.validation import budget_problem
from runs.models import Graph, Run
from runs.services.events import run_event_add, run_transition
from runs.services.graphs import GraphNotRunnable, graph_resolve, graph_run_refusal


class InvalidInput(CMOError, ValueError):
    """The run input does not match the graph's input schema; ``errors`` lists path and message."""

    status, code = 422, "invalid_input"

    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors
        self.details = errors
        super().__init__("; ".join(f"{e['path']}: {e['message']}" for e in errors))


class InvalidBudget(CMOError, ValueError):
    """A run's budget for its model calls is not {"tokens": N, "cost_usd": X}."""

    status, code = 422, "invalid_budget"


def input_errors(*, graph: Graph, data: Any) -> list[dict[str, str]]:
    schema = graph.definition.get("input_schema") or {"type": "object"}
    validator = jsonschema.Draft202012Validator(schema)
    return [
        {"path": e.json_path, "message": e.message}
        for e in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    ]


def run_input_check(*, graph: Graph, data: Any) -> Any:
    """``data`` as a run of ``graph`` would store it (normalized JSON), or InvalidInput: not JSON we can store,
    a secret-named field, or a mismatch with the graph's input schema. Also what a schedule checks when saved."""
    try:
        data, _, _, text = normalize_text(data, what="the run input")
    except NotJSONError as exc:
        raise InvalidInput([{"path": "$", "message": str(exc)}]) from None
    try:
        refuse_secrets(data, text, what="the run input")
    except SecretInState as exc:
        raise InvalidInput([{"path": "$", "message": str(exc)}]) from None
    errors = input_errors(graph=graph, data=data)
    if errors:
        raise InvalidInput(errors)
    return data


def run_start(
    *,
    graph_name: str,
    version: int | None = None,
    data: Any,
    seed: int | None = None,
    user: AbstractBaseUser | AnonymousUser | None = None,
    role: str = "",
    run_timeout: float | None = None,
    spawn: dict[str, Any] | None = None,
    history: dict[str, Any] | None = None,
    concurrency: dict[str, Any] | None = None,
    budget: dict[str, Any] | None = None,
) -> Run:
    """Create a PENDING run and wake a worker after commit (``spawn``: the fields of a child run, see
    runs.services.spawn; ``history``: more of its context; ``concurrency``: a declaration that replaces
    the graph's, see :func:`run_create`; ``budget``: its model calls' budget, instead of the graph's).

    The run exists durably when this returns: a lost wake-up only delays it
    until a worker polls or the scheduler sweeps. Raises Graph.DoesNotExist,
    GraphNotRunnable (an imported version, for someone who may not run it) or
    InvalidInput before anything is written.
    """
    graph = graph_resolve(name=graph_name, version=version)
    refusal = graph_run_refusal(graph=graph, user=user, role=role)
    if refusal:
        raise GraphNotRunnable(refusal)
    data = run_input_check(graph=graph, data=data)
    problem = budget_problem(budget)
    if problem:
        raise InvalidBudget(problem)
    return run_create(
        graph=graph,
        data=data,
        seed=secrets.randbits(62) if seed is None else seed,
        user=user,
        role=role,
        run_timeout=run_timeout,
        history=history,
        detail={"graph": graph.name, "version": graph.version},
        spawn=spawn,
        concurrency=concurrency,
        budget=budget,
    )


def actor_name(user: AbstractBaseUser | AnonymousUser | None) -> str:
    """The user name runs and events record ("" for nobody: the command line, a test)."""
    return user.get_username() if user is not None and getattr(user, "is_authenticated", False) else ""


def run_create(
    *,
    graph: Graph,
    data: Any,
    seed: int,
    user: AbstractBaseUser | AnonymousUser | None,
    role: str,
    state: Any = None,
    node: str | None = None,
    step_index: int = 0,
    parent: Run | None = None,
    parent_step: int | None = None,
    history: dict[str, Any] | None = None,
    run_timeout: float | None = None,
    message: str = "submitted",
    detail: dict[str, Any] | None = None,
    restore: dict[str, Any] | None = None,
    spawn: dict[str, Any] | None = None,
    concurrency: dict[str, Any] | None = None,
    budget: dict[str, Any] | None = None,
) -> Run:
    """The one way a run comes to exist: started, forked, imported (and later scheduled, or a child run).

    It executes as ``user`` with ``role``, recorded in its context with ``history`` (who forked it
    from what, where it was imported from): the identity of its creator, never more. A new run is
    PENDING at ``node`` (default: the entry) and ``step_index``, with the graph's ``max_steps`` and
    run timeout, has its "created" event and wakes a worker after commit. With ``restore`` (the
    fields an import copies from a bundle, its status an ended one) nothing wakes and the caller
    writes the events. Callers validate ``data`` first.

    Its concurrency key comes from ``concurrency`` (a schedule's or a hook's declaration) or else the
    graph's, computed from ``data`` (:func:`run_slot`); InvalidInput naming the key path, before anything
    is written, when the input has no usable value there.
    """
    slot = run_slot(graph=graph, data=data, concurrency=concurrency, parent=parent, restore=restore, spawn=spawn)
    actor = actor_name(user)
    timeout = run_timeout if run_timeout is not None else graph.definition.get("run_timeout")
    fields: dict[str, Any] = {
        "graph": graph,
        "input": data,
        "state": data if state is None else state,
        "seed": seed,
        "node": graph.definition["entry"] if node is None else node,
        "step_index": step_index,
        "max_steps": graph.definition.get("max_steps", DEFAULT_MAX_STEPS),
        "deadline_at": timezone.now() + dt.timedelta(seconds=timeout) if timeout and restore is None else None,
        "parent": parent,
        "parent_step": parent_step,
        "created_by": user if actor else None,
        "context": {"user": actor, "role": role, **(history or {})},
        "concurrency_key": slot.key,
        "concurrency_limit": slot.limit,
        "concurrency_rate": slot.rate,
        # Its own budget, else its parent's (a fork spends afresh under the same cap), else the graph's.
        "budget": budget if budget is not None else (parent.budget if parent else graph.definition.get("budget")),
        **(spawn or {}),
        **(restore or {}),
    }
    with transaction.atomic():
        run = Run.objects.create(**fields)
        if restore is None:
            run_event_add(
                run_id=run.pk, kind="created", to_status=sm.PENDING, message=message, actor=actor, detail=detail
            )
            run_wake(run.pk)
    return run


def run_slot(
    *,
    graph: Graph,
    data: Any,
    concurrency: dict[str, Any] | None,
    parent: Run | None = None,
    restore: dict[str, Any] | None = None,
    spawn: dict[str, Any] | None = None,
) -> Slot:
    """The concurrency slot a new run takes (runs.engine.concurrency): ``concurrency`` or the graph's declaration.

    A fork does the work of the run it forks, so it keeps that run's key (its input is a later state); an
    imported run has ended and takes none. A child run whose key is one its spawners hold runs in their
    slot (waiting for it would wait for itself); branches are created elsewhere and have none.
    """
    if restore is not None:
        return NO_SLOT
    if parent is not None and concurrency is None:
        return Slot(key=parent.concurrency_key, limit=parent.concurrency_limit, rate=parent.concurrency_rate)
    declaration = concurrency if concurrency is not None else graph.definition.get("concurrency")
    problems = declaration_problems(declaration)
    if problems:
        raise InvalidInput([{"path": "concurrency", "message": p} for p in problems])
    try:
        slot = concurrency_slot(graph_name=graph.name, declaration=declaration, data=data)
    except KeyPathError as exc:
        raise InvalidInput([{"path": exc.path, "message": exc.message}]) from None
    spawner = (spawn or {}).get("spawned_by")
    if slot.key and spawner is not None and slot.key in _spawner_keys(spawner):
        return NO_SLOT
    return slot


def _spawner_keys(run: Run, depth: int = 32) -> set[str]:
    keys = {run.concurrency_key}
    ids = [run.spawned_by_id]
    while ids[-1] is not None and len(ids) < depth:
        row = Run.objects.filter(pk=ids[-1]).values_list("concurrency_key", "spawned_by_id").first()
        if row is None:
            break
        keys.add(row[0])
        ids.append(row[1])
    return keys - {""}


def run_abort(*, run: Run, actor: str = "") -> Run:
    """Abort a run: at once if no worker holds it, otherwise between steps or activities."""
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.is_terminal:
            raise sm.InvalidTransition(locked.status, sm.ABORTED)
        if locked.status in (sm.PENDING, sm.WAITING) or not locked.lease_owner:
            return run_transition(run_id=run.pk, target=sm.ABORTED, message="aborted", actor=actor)
        Run.objects.filter(pk=run.pk).update(abort_requested=True)
        run_event_add(run_id=run.pk, kind="abort_requested", message="abort requested", actor=actor)
    locked.refresh_from_db()
    return locked
