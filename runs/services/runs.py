"""Start and abort runs."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

import jsonschema
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.utils import timezone

from runs.engine import statemachine as sm
from runs.engine.errors import NotJSONError
from runs.engine.hashing import normalize_text
from runs.engine.secrets import SecretInState, refuse_secrets
from runs.models import Graph, Run
from runs.services.dispatch import run_wake
from runs.services.events import run_event_add, run_transition
from runs.services.graphs import GraphNotRunnable, graph_resolve, graph_run_refusal


class InvalidInput(ValueError):
    """The run input does not match the graph's input schema; ``errors`` lists path and message."""

    def __init__(self, errors: list[dict[str, str]]):
        self.errors = errors
        super().__init__("; ".join(f"{e['path']}: {e['message']}" for e in errors))


def input_errors(*, graph: Graph, data: Any) -> list[dict[str, str]]:
    schema = graph.definition.get("input_schema") or {"type": "object"}
    validator = jsonschema.Draft202012Validator(schema)
    return [
        {"path": e.json_path, "message": e.message}
        for e in sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    ]


def run_start(
    *,
    graph_name: str,
    version: int | None = None,
    data: Any,
    seed: int | None = None,
    user: AbstractBaseUser | AnonymousUser | None = None,
    role: str = "",
    run_timeout: float | None = None,
) -> Run:
    """Create a PENDING run and wake a worker after commit.

    The run exists durably when this returns: a lost wake-up only delays it
    until a worker polls or the scheduler sweeps. Raises Graph.DoesNotExist,
    GraphNotRunnable (an imported version, for someone who may not run it) or
    InvalidInput before anything is written.
    """
    graph = graph_resolve(name=graph_name, version=version)
    refusal = graph_run_refusal(graph=graph, user=user, role=role)
    if refusal:
        raise GraphNotRunnable(refusal)
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
    timeout = run_timeout if run_timeout is not None else graph.definition.get("run_timeout")
    now = timezone.now()
    is_user = user is not None and getattr(user, "is_authenticated", False)
    with transaction.atomic():
        run = Run.objects.create(
            graph=graph,
            input=data,
            state=data,
            seed=secrets.randbits(62) if seed is None else seed,
            node=graph.definition["entry"],
            max_steps=graph.definition.get("max_steps", 1000),
            deadline_at=now + dt.timedelta(seconds=timeout) if timeout else None,
            created_by=user if is_user else None,  # type: ignore[misc]
            context={"user": getattr(user, "username", "") if is_user else "", "role": role},
        )
        run_event_add(
            run_id=run.pk,
            kind="created",
            to_status=sm.PENDING,
            message="submitted",
            actor=run.context["user"],
            detail={"graph": graph.name, "version": graph.version},
        )
        run_wake(run.pk)
    return run


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
