"""The JSON API for graphs, runs, specialists and metrics (mounted under /api by cmo_site.api).

Endpoints declare their role (``auth=requires(ACTION)``), parse, call a service or
selector and return; errors are raised and turned into JSON by the handlers
in cmo_site.shared.api.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from django.utils import timezone
from ninja import Field, Query, Router, Schema, Status

from cmo_site.shared.api import (
    MAX_INT,
    ApiError,
    Name,
    StrictIn,
    TraceId,
    UtcDatetime,
    caller,
    errors,
    requires,
)
from cmo_site.shared.permissions import MANAGE_SPECIALISTS, OPERATE, VIEW
from runs import metrics, selectors
from runs.llm.usage import usage_by_day
from runs.models import Activity, Graph, Run, Specialist
from runs.services.graphs import graph_create_from_json, graph_resolve
from runs.services.runs import run_abort, run_start
from runs.services.signals import signal_send
from runs.services.versions import run_move_version
from runs.specialists.registry import (
    RegistryCaller,
    specialist_heartbeat,
    specialist_register,
    specialist_status,
)

router = Router()

Index = Annotated[int, Field(ge=0, le=MAX_INT)]
Version = Annotated[int, Field(ge=1, le=MAX_INT)]
Seed = Annotated[int, Field(ge=-(2**63), le=2**63 - 1)]
RunStatus = Literal["PENDING", "RUNNING", "WAITING", "COMPLETED", "FAILED", "TIMED_OUT", "ABORTED"]
RunKind = Literal["run", "child", "branch"]


# -- graphs ----------------------------------------------------------------------------------


class GraphSummaryOut(Schema):
    name: str
    latest_version: int
    description: str
    versions: int
    runs: int
    updated_at: dt.datetime


class GraphListOut(Schema):
    graphs: list[GraphSummaryOut]


class GraphOut(Schema):
    name: str
    version: int
    description: str
    origin: Literal["code", "json", "import"]
    definition: dict[str, Any]
    definition_hash: str
    node_hashes: dict[str, str]
    created_at: dt.datetime


class GraphVersionOut(Schema):
    version: int
    description: str
    origin: Literal["code", "json", "import"]
    definition_hash: str
    created_at: dt.datetime
    runs: int


class GraphVersionsOut(Schema):
    name: str
    versions: list[GraphVersionOut]


class GraphQuery(Schema):
    version: Version | None = Field(None, description="a version number (default: the latest)")


class GraphCreateIn(StrictIn):
    definition: dict[str, Any] = Field(
        description="name, entry, nodes (registered node names), edges, optional input_schema and limits"
    )


class GraphCreateOut(Schema):
    created: bool = Field(description="false when the latest version already has this definition")
    graph: GraphOut


@router.get("/graphs", response={200: GraphListOut, **errors(403)}, tags=["graphs"], auth=requires(VIEW))
def graph_list(request: HttpRequest) -> dict[str, Any]:
    return {
        "graphs": [
            {
                "name": g["name"],
                "latest_version": g["latest"].version,
                "description": g["latest"].description,
                "versions": g["versions"],
                "runs": g["runs"],
                "updated_at": g["latest"].created_at,
            }
            for g in selectors.graph_summaries()
        ]
    }


@router.post(
    "/graphs",
    response={200: GraphCreateOut, 201: GraphCreateOut, **errors(400, 415, 403, 413, 422)},
    tags=["graphs"],
    auth=requires(OPERATE),
    openapi_extra={
        "responses": {
            status: {
                "links": {
                    "GetGraphVersion": {
                        "operationId": "runs_api_graph_get",
                        "parameters": {
                            "path.name": "$response.body#/graph/name",
                            "query.version": "$response.body#/graph/version",
                        },
                        "description": "the version this definition is stored as",
                    },
                    "GetGraphVersions": {
                        "operationId": "runs_api_graph_versions",
                        "parameters": {"name": "$response.body#/graph/name"},
                    },
                    "StartRun": {
                        "operationId": "runs_api_run_create",
                        "requestBody": {
                            "graph": "$response.body#/graph/name",
                            "version": "$response.body#/graph/version",
                        },
                        "description": "start a run on this version",
                    },
                }
            }
            for status in (200, 201)
        }
    },
)
def graph_create(request: HttpRequest, body: GraphCreateIn) -> Status[dict[str, Any]]:
    principal = caller(request)
    graph, created = graph_create_from_json(
        definition=body.definition, user=principal.user, role=principal.primary_role
    )
    return Status(201 if created else 200, {"created": created, "graph": graph})


@router.get("/graphs/{name}", response={200: GraphOut, **errors(403, 404, 422)}, tags=["graphs"], auth=requires(VIEW))
def graph_get(request: HttpRequest, name: Name, query: Query[GraphQuery]) -> Graph:
    return graph_resolve(name=name, version=query.version)


@router.get(
    "/graphs/{name}/versions",
    response={200: GraphVersionsOut, **errors(403, 404, 422)},
    tags=["graphs"],
    auth=requires(VIEW),
)
def graph_versions(request: HttpRequest, name: Name) -> dict[str, Any]:
    versions = selectors.graph_versions(name=name)
    if not versions:
        raise ApiError(404, "not_found", f"no graph named {name!r}")
    return {
        "name": name,
        "versions": [
            {
                "version": g.version,
                "description": g.description,
                "origin": g.origin,
                "definition_hash": g.definition_hash,
                "created_at": g.created_at,
                "runs": g.run_count,  # type: ignore[attr-defined]
            }
            for g in versions
        ],
    }


# -- runs ------------------------------------------------------------------------------------


class BudgetIn(StrictIn):
    tokens: int | None = Field(None, ge=1, le=1_000_000_000_000, description="input + output tokens")
    cost_usd: float | None = Field(None, gt=0, le=1_000_000_000, description="USD, from the price table")


class RunStartIn(StrictIn):
    graph: Name
    version: Version | None = Field(None, description="default: the latest version")
    input: Any = Field(default_factory=dict, description="must match the graph's input_schema")
    seed: Seed | None = Field(None, description="seeds ctx.activities.rand (default: random)")
    budget: BudgetIn | None = Field(None, description="caps the run's model calls (default: the graph's budget)")


class RunOut(Schema):
    trace_id: str
    graph: str
    version: int
    status: RunStatus
    terminal: bool
    node: str | None
    step_index: int
    attempt: int
    error: str
    wait_reason: str
    input: Any
    seed: int
    created_by: str = Field(description="who started, forked or imported the run")
    role: str = Field(description="the role the run executes with: its creator's at creation, never more")
    parent_trace_id: str | None = Field(description="the run this one was forked from")
    parent_step: int | None
    kind: RunKind = Field(description="run; child (started by a run's start_run); branch (of a run's fan-out)")
    spawned_by: str | None = Field(description="the trace id of the run that started this child or branch")
    spawn_step: int | None = Field(description="the step of spawned_by that started it")
    spawned: int = Field(description="how many children and branches this run started")
    pinned: bool
    abort_requested: bool = Field(description="a worker holds the run; it stops at the next step or activity")
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_seconds: float | None
    queued_seconds: float | None
    final_state: Any = Field(description="the state at the end (null until the run ends)")
    concurrency_key: str = Field(
        description="\"<graph>:<value>\" from the graph's concurrency declaration (the graph's name when key-less); "
        '"" for none. Runs with one key share its limit and rate.'
    )
    tokens: int = Field(description="model tokens the run's calls spent (input + output)")
    cost_usd: float = Field(description="what the run's model calls cost, from the providers' price tables")
    budget: dict[str, Any] | None = Field(description='{"tokens", "cost_usd"} its model calls may spend')


class RunSummaryOut(Schema):
    trace_id: str
    graph: str
    version: int
    status: RunStatus
    node: str | None
    step_index: int
    tokens: int
    cost_usd: float
    parent_step: int | None
    kind: RunKind
    spawned_by: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class RunListQuery(Schema):
    status: RunStatus | None = None
    graph: Name | None = None
    version: Version | None = Field(None, description="with graph: only this version")
    since: UtcDatetime | None = Field(None, description="created at or after")
    until: UtcDatetime | None = Field(None, description="created before")
    trace: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{1,32}$")] | None = Field(None, description="trace id prefix")
    spawned_by: TraceId | None = Field(None, description="only the children and branches this run started")
    kind: RunKind | None = Field(
        None, description="only runs of this kind (default: runs and child runs; branches with kind or spawned_by)"
    )
    field: list[str] = Field(
        default_factory=list,
        description=(
            "a field search, repeatable (all must match): PATH=VALUE (equal) or PATH~VALUE (contains, any case), "
            "PATH a key path into the run's input or stored state (its final state once it ended), keys of letters, "
            "digits, _ and - joined by dots, at most 8 deep (input. or state. first: only that one; digits: an "
            "array index). VALUE is compared as text and, when it is a JSON number, true, false or null, as that "
            'value too (attempts=3 finds 3 and "3"). A bad path is a 422 invalid_search. Not indexed: add a '
            "graph, status or time filter on a large database"
        ),
    )
    error: str | None = Field(None, description="only runs whose error contains this text (any case)")
    sort: Literal["-created", "created", "-cost"] = Field("-created", description="-cost: the costliest first")
    cursor: Annotated[str, Field(pattern=r"^-?[0-9]{1,20}~[0-9]{1,20}$")] | None = Field(
        None, description="next_cursor of the previous page"
    )
    limit: int = Field(50, ge=1, le=200)


class RunListOut(Schema):
    runs: list[RunSummaryOut]
    next_cursor: str | None = Field(description="pass as cursor for the next page; null on the last page")


def run_out(run: Run) -> dict[str, Any]:
    return {
        **selectors.run_header(run=run),
        "graph": run.graph.name,
        "version": run.graph.version,
        "input": run.input,
        "seed": run.seed,
        "created_by": run.context.get("user", ""),
        "role": run.context.get("role", ""),
        "parent_trace_id": run.parent.trace_id if run.parent else None,
        "parent_step": run.parent_step,
        "kind": run.kind,
        "spawned_by": run.spawned_by.trace_id if run.spawned_by else None,
        "spawn_step": run.spawn_step,
        "spawned": run.spawned.count(),
        "pinned": run.pinned,
        "abort_requested": run.abort_requested,
        "concurrency_key": run.concurrency_key,
        "tokens": run.tokens,
        "cost_usd": run.cost_usd,
        "budget": run.budget,
    }


def run_or_404(trace_id: str) -> Run:
    return get_object_or_404(Run.objects.select_related("graph", "parent", "spawned_by"), trace_id=trace_id)


@router.post(
    "/runs",
    response={201: RunOut, **errors(400, 403, 404, 413, 415, 422)},
    tags=["runs"],
    auth=requires(OPERATE),
    openapi_extra={
        "responses": {
            201: {
                "links": {
                    "GetRun": {
                        "operationId": "runs_api_run_get",
                        "parameters": {"trace_id": "$response.body#/trace_id"},
                    },
                    "GetRunSteps": {
                        "operationId": "runs_api_run_steps",
                        "parameters": {"trace_id": "$response.body#/trace_id"},
                    },
                    "GetRunActivities": {
                        "operationId": "runs_api_run_activities",
                        "parameters": {"trace_id": "$response.body#/trace_id"},
                    },
                    "GetRunEvents": {
                        "operationId": "runs_api_run_events",
                        "parameters": {"trace_id": "$response.body#/trace_id"},
                    },
                    "AbortRun": {
                        "operationId": "runs_api_run_abort_endpoint",
                        "parameters": {"trace_id": "$response.body#/trace_id"},
                    },
                    "VerifyRun": {
                        "operationId": "replay_api_run_verify_endpoint",
                        "parameters": {"trace_id": "$response.body#/trace_id"},
                    },
                    "ForkRun": {
                        "operationId": "replay_api_run_fork_endpoint",
                        "parameters": {"trace_id": "$response.body#/trace_id"},
                        "requestBody": {"step": 0},
                        "description": "continue after the first step",
                    },
                    "ExportRun": {
                        "operationId": "replay_api_run_export",
                        "parameters": {"trace_id": "$response.body#/trace_id"},
                    },
                }
            }
        }
    },
)
def run_create(request: HttpRequest, body: RunStartIn) -> Status[dict[str, Any]]:
    principal = caller(request)
    run = run_start(
        graph_name=body.graph,
        version=body.version,
        data=body.input,
        seed=body.seed,
        user=principal.user,
        role=principal.primary_role,
        budget=body.budget.model_dump(exclude_none=True) or None if body.budget else None,
    )
    return Status(201, run_out(run))


@router.get("/runs", response={200: RunListOut, **errors(403, 422)}, tags=["runs"], auth=requires(VIEW))
def run_list(request: HttpRequest, query: Query[RunListQuery]) -> dict[str, Any]:
    fields, error, problems = selectors.parse_run_search(query.field, query.error or "")
    if problems:
        raise ApiError(422, "invalid_search", "; ".join(problems), details={"problems": problems})
    filters = selectors.RunFilters(
        status=query.status or "",
        graph=query.graph or "",
        version=query.version,
        since=query.since,
        until=query.until,
        trace=query.trace or "",
        spawned_by=query.spawned_by or "",
        kind=query.kind or "",
        fields=fields,
        error=error,
    )
    if query.cursor and selectors.decode_cursor(query.cursor) is None:
        raise ApiError(
            422, "invalid_cursor", f"cursor {query.cursor!r} is not a position in the list: pass a page's next_cursor"
        )
    page = selectors.run_list(filters=filters, sort=query.sort, cursor=query.cursor or "", limit=query.limit)
    return {
        "runs": [
            {
                **_summary_fields(r),
                "graph": r.graph.name,
                "version": r.graph.version,
                "spawned_by": r.spawned_by_trace,  # type: ignore[attr-defined]
            }
            for r in page.runs
        ],
        "next_cursor": page.next_cursor,
    }


def _summary_fields(run: Run) -> dict[str, Any]:
    fields = (
        "trace_id",
        "status",
        "node",
        "step_index",
        "parent_step",
        "kind",
        "created_at",
        "started_at",
        "finished_at",
        "tokens",
        "cost_usd",
    )
    return {f: getattr(run, f) for f in fields}


@router.get("/runs/{trace_id}", response={200: RunOut, **errors(403, 404, 422)}, tags=["runs"], auth=requires(VIEW))
def run_get(request: HttpRequest, trace_id: TraceId) -> dict[str, Any]:
    return run_out(run_or_404(trace_id))


@router.post(
    "/runs/{trace_id}/abort",
    response={200: RunOut, **errors(403, 404, 409, 422)},
    tags=["runs"],
    auth=requires(OPERATE),
)
def run_abort_endpoint(request: HttpRequest, trace_id: TraceId) -> dict[str, Any]:
    principal = caller(request)
    run_abort(run=run_or_404(trace_id), actor=principal.username)
    return run_out(run_or_404(trace_id))


class MoveIn(StrictIn):
    version: Version = Field(description="the version of the run's graph to continue on, at the run's current step")


@router.post(
    "/runs/{trace_id}/move",
    response={200: RunOut, **errors(400, 403, 404, 409, 413, 415, 422)},
    tags=["runs"],
    auth=requires(OPERATE),
)
def run_move(request: HttpRequest, trace_id: TraceId, body: MoveIn) -> dict[str, Any]:
    """Move a run no worker holds to another version of its graph (after a deploy changed its nodes): the
    current step and the later ones run on that version's code. A run event and an audit entry record it."""
    principal = caller(request)
    run = run_move_version(run=run_or_404(trace_id), version=body.version, user=principal.user,
                           role=principal.primary_role)  # fmt: skip
    return run_out(run)


class SignalIn(StrictIn):
    payload: Any = Field(None, description="any JSON; checked against the schema the waiting node declared, if any")


class SignalOut(Schema):
    trace_id: str
    name: str
    signal_id: int
    delivered: bool = Field(description="false: the run is not waiting for it yet; it is kept and delivered then")
    sent_by: str
    sent_at: dt.datetime


@router.post(
    "/runs/{trace_id}/signals/{name}",
    response={202: SignalOut, **errors(400, 403, 404, 409, 413, 415, 422)},
    tags=["runs"],
    auth=requires(OPERATE),
)
def run_signal_endpoint(request: HttpRequest, trace_id: TraceId, name: Name, body: SignalIn) -> Status[dict[str, Any]]:
    """Send signal ``name`` to a run's ``ctx.activities.wait_for_signal(name)``: delivered now if it waits, else
    kept until it does. 409 if the run has ended; 422 if the payload does not match the node's schema."""
    principal = caller(request)
    run = run_or_404(trace_id)
    signal = signal_send(run=run, name=name, payload=body.payload, actor=principal.username)
    return Status(
        202,
        {
            "trace_id": run.trace_id,
            "name": name,
            "signal_id": signal.pk,
            "delivered": signal.delivered_at is not None,
            "sent_by": signal.sent_by,
            "sent_at": signal.sent_at,
        },
    )


class ActivityOut(Schema):
    step: int
    seq: int
    type: str
    status: Literal["completed", "failed", "pending"]
    attempt: int
    request: Any
    request_hash: str
    response: Any = Field(description='large responses are {"$blob": sha256}; export the run for the content')
    error: str
    duration_ms: float


class StepOut(Schema):
    index: int
    node: str
    attempt: int
    edge: str | None
    started_at: dt.datetime
    duration_ms: float
    error: str
    input: Any = Field(description="the state before the step")
    state: Any = Field(description="the state after the step")
    output: Any
    diff: list[dict[str, Any]]
    hashes: dict[str, str]
    activities: list[ActivityOut]


class StepsQuery(Schema):
    after: int = Field(-1, ge=-1, le=MAX_INT, description="only steps with a greater index")
    limit: int = Field(100, ge=1, le=1000, description="at most this many steps (each carries its full state)")


class StepsOut(Schema):
    trace_id: str
    steps: list[StepOut]
    next_after: int | None = Field(description="pass as after for the next page; null on the last page")


@router.get(
    "/runs/{trace_id}/steps", response={200: StepsOut, **errors(403, 404, 422)}, tags=["runs"], auth=requires(VIEW)
)
def run_steps(request: HttpRequest, trace_id: TraceId, query: Query[StepsQuery]) -> dict[str, Any]:
    run = run_or_404(trace_id)
    steps = selectors.run_steps_view(run=run, after=query.after, limit=query.limit + 1)
    more = len(steps) > query.limit
    steps = steps[: query.limit]
    return {"trace_id": run.trace_id, "steps": steps, "next_after": steps[-1]["index"] if more else None}


class ActivitiesQuery(Schema):
    step: Index | None = Field(None, description="only this step's activities")


class ActivityKeyedOut(ActivityOut):
    idempotency_key: str = Field(description="trace:step:seq")


class ActivitiesOut(Schema):
    trace_id: str
    activities: list[ActivityKeyedOut]


@router.get(
    "/runs/{trace_id}/activities",
    response={200: ActivitiesOut, **errors(403, 404, 422)},
    tags=["runs"],
    auth=requires(VIEW),
)
def run_activities(request: HttpRequest, trace_id: TraceId, query: Query[ActivitiesQuery]) -> dict[str, Any]:
    run = run_or_404(trace_id)
    rows = Activity.objects.filter(run_id=run.pk).order_by("step", "seq")
    if query.step is not None:
        rows = rows.filter(step=query.step)
    return {
        "trace_id": run.trace_id,
        "activities": [
            {
                **selectors.activity_view(a),
                "idempotency_key": f"{run.trace_id}:{a.step}:{a.seq}",
            }
            for a in rows
        ],
    }


class EventOut(Schema):
    id: int
    kind: str
    from_status: str
    to_status: str
    step: int | None
    message: str
    actor: str
    detail: Any
    at: dt.datetime


class EventsQuery(Schema):
    after: int = Field(0, ge=0, le=2**63 - 1, description="only events with a greater id")


class EventsOut(Schema):
    trace_id: str
    events: list[EventOut]


@router.get(
    "/runs/{trace_id}/events", response={200: EventsOut, **errors(403, 404, 422)}, tags=["runs"], auth=requires(VIEW)
)
def run_events(request: HttpRequest, trace_id: TraceId, query: Query[EventsQuery]) -> dict[str, Any]:
    run = run_or_404(trace_id)
    return {"trace_id": run.trace_id, "events": selectors.run_events_view(run=run, after=query.after)}


# -- specialists -------------------------------------------------------------------------------


class SpecialistOut(Schema):
    name: str
    version: str
    capabilities: list[Any]
    transport: Literal["inprocess", "redis"]
    address: str
    registered: bool
    enabled: bool
    status: Literal["online", "stale", "offline"]
    last_heartbeat_at: dt.datetime | None


class SpecialistListOut(Schema):
    specialists: list[SpecialistOut]


class SpecialistRegisterIn(StrictIn):
    name: Name
    version: Annotated[str, Field(max_length=40, pattern=r"^[^\x00]*$")] = ""
    capabilities: list[Annotated[str, Field(max_length=200, pattern=r"^[^\x00]*$")]] = Field(
        default_factory=list, max_length=100
    )
    transport: Literal["inprocess", "redis"] = "redis"
    address: Annotated[str, Field(max_length=300, pattern=r"^[^\x00]*$")] = ""


def _specialist_out(row: Specialist) -> dict[str, Any]:
    fields = ("name", "version", "capabilities", "transport", "address", "registered", "enabled", "last_heartbeat_at")
    return {**{f: getattr(row, f) for f in fields}, "status": specialist_status(row.last_heartbeat_at)}


@router.get("/specialists", response={200: SpecialistListOut, **errors(403)}, tags=["specialists"], auth=requires(VIEW))
def specialist_list(request: HttpRequest) -> dict[str, Any]:
    return {"specialists": [_specialist_out(s) for s in Specialist.objects.order_by("name")]}


@router.post(
    "/specialists",
    response={200: SpecialistOut, **errors(400, 415, 403, 413, 422)},
    tags=["specialists"],
    auth=requires(MANAGE_SPECIALISTS),
    openapi_extra={
        "responses": {
            200: {
                "links": {
                    "Heartbeat": {
                        "operationId": "runs_api_specialist_heartbeat_endpoint",
                        "parameters": {"name": "$response.body#/name"},
                    }
                }
            }
        }
    },
)
def specialist_register_endpoint(request: HttpRequest, body: SpecialistRegisterIn) -> dict[str, Any]:
    row = specialist_register(
        name=body.name,
        version=body.version,
        capabilities=body.capabilities,
        transport=body.transport,
        address=body.address,
        caller=_registry_caller(request),
    )
    return _specialist_out(row)


def _registry_caller(request: HttpRequest) -> RegistryCaller:
    principal = caller(request)
    token = principal.token
    return RegistryCaller(
        user=principal.user,
        role=principal.primary_role,
        bound_to=token.specialist if token is not None else "",
        via=f"token {token.prefix}" if token is not None else "session",
    )


@router.post(
    "/specialists/{name}/heartbeat",
    response={200: SpecialistOut, **errors(403, 404, 422)},
    tags=["specialists"],
    auth=requires(MANAGE_SPECIALISTS),
)
def specialist_heartbeat_endpoint(request: HttpRequest, name: Name) -> dict[str, Any]:
    if not specialist_heartbeat(name=name, caller=_registry_caller(request)):
        raise ApiError(404, "not_found", f"specialist {name!r} is not registered; register it first")
    return _specialist_out(Specialist.objects.get(name=name))


# -- metrics -----------------------------------------------------------------------------------


class ActivityQuery(Schema):
    days: int = Field(7, ge=1, le=metrics.MAX_DAYS, description=f"1 to {metrics.MAX_DAYS} days, today included")


class DayOut(Schema):
    day: dt.date
    runs: int
    steps: int
    errors: int = Field(description="runs that ended FAILED or TIMED_OUT that day")
    activities: int


class ActivityMetricsOut(Schema):
    days: list[DayOut]


class LlmGraphDayOut(Schema):
    graph_name: str
    calls: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


class LlmDayOut(Schema):
    day: dt.date
    calls: int = Field(description="model calls recorded as completed that day (UTC)")
    input_tokens: int = Field(description="including the tokens served from the provider's cache")
    output_tokens: int
    cached_tokens: int
    cost_usd: float = Field(description="from the providers' price tables")
    graphs: list[LlmGraphDayOut] = Field(description="the day's figures per graph, costliest first")


class LlmMetricsOut(Schema):
    days: list[LlmDayOut]


class EventTypeOut(Schema):
    kind: str
    count: int


class SummaryOut(Schema):
    day: dt.date
    runs_started: int
    runs_completed: int
    runs_failed: int = Field(description="FAILED and TIMED_OUT")
    runs_aborted: int
    runs_active: int = Field(description="PENDING, RUNNING or WAITING now")
    steps: int
    activities: int
    activity_errors: int
    error_rate: float = Field(description="failed / (completed + failed) among runs that ended today")
    approvals_waiting: int
    top_event_types: list[EventTypeOut]


@router.get(
    "/metrics/activity", response={200: ActivityMetricsOut, **errors(403, 422)}, tags=["metrics"], auth=requires(VIEW)
)
def metrics_activity(request: HttpRequest, query: Query[ActivityQuery]) -> dict[str, Any]:
    return {"days": metrics.metrics_activity(days=query.days, now=timezone.now())}


@router.get("/metrics/llm", response={200: LlmMetricsOut, **errors(403, 422)}, tags=["metrics"], auth=requires(VIEW))
def metrics_llm(request: HttpRequest, query: Query[ActivityQuery]) -> dict[str, Any]:
    """Model calls, tokens and cost per day and graph (kept when retention deletes the runs)."""
    return {"days": usage_by_day(days=query.days, now=timezone.now())}


@router.get("/metrics/summary", response={200: SummaryOut, **errors(403)}, tags=["metrics"], auth=requires(VIEW))
def metrics_summary(request: HttpRequest) -> dict[str, Any]:
    return metrics.metrics_summary(now=timezone.now())
