"""The JSON API for replay: fork, verify, compare, export and import runs (under /api/runs/...)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from django.http import HttpRequest
from ninja import Body, Field, Query, Router, Schema, Status
from pydantic import WithJsonSchema

from cmo_site.shared.api import MAX_INT, StrictIn, TraceId, caller, errors, requires
from cmo_site.shared.permissions import OPERATE, VIEW
from replay.bundles import SCHEMA as BUNDLE_SCHEMA
from replay.bundles import bundle_export, bundle_import
from replay.services import run_compare, run_fork, run_verify
from runs.api import RunOut, run_or_404, run_out

router = Router(tags=["replay"])


def _openapi_bundle_schema() -> dict[str, Any]:
    """The bundle's JSON Schema as OpenAPI shows it: its nested bundles (``spawned``, ``"$ref": "#"``, which the
    validator resolves) described as objects of this same schema, since a root reference cannot be embedded."""
    schema = {k: v for k, v in BUNDLE_SCHEMA.items() if k not in ("$schema", "$id")}
    properties = dict(schema["properties"])
    properties["spawned"] = {
        **properties["spawned"],
        "items": {"type": "object", "description": "a whole trace bundle, by this same schema"},
    }
    return {**schema, "properties": properties}


# The bundle's own JSON Schema (replay/schemas/trace_bundle.schema.json) documents both directions.
TraceBundle = Annotated[dict[str, Any], WithJsonSchema(_openapi_bundle_schema())]


class ForkIn(StrictIn):
    step: int = Field(ge=0, le=MAX_INT, description="continue after this step")
    state: Any = Field(None, description="the state to continue with (default: the recorded state at step)")
    version: int | None = Field(None, ge=1, le=MAX_INT, description="run on this graph version (same or newer)")


class StepCheckOut(Schema):
    index: int
    node: str
    status: Literal["match", "mismatch", "unchecked"]
    cause: str
    detail: dict[str, Any]


class VerifyOut(Schema):
    trace_id: str
    kind: Literal["run", "child", "branch"]
    ok: bool = Field(description="every step matched, in this run and in every run it started")
    steps: list[StepCheckOut]
    first_divergence: StepCheckOut | None
    spawned: list[VerifyOut] = Field(description="the reports of its branches and child runs")


class ComparePairOut(Schema):
    left: int | None
    right: int | None
    node: str
    match: bool
    diff: list[dict[str, Any]]


class CompareOut(Schema):
    left: str
    right: str
    match_percent: float
    first_divergence: ComparePairOut | None
    pairs: list[ComparePairOut]
    spawned: list[SpawnedPairOut] = Field(description="their branches and child runs, paired by place")


class SpawnedPairOut(Schema):
    place: str = Field(description='e.g. "fan-out 1, branch 2 (summarize)" or "child 1 (incident-healing)"')
    left: str | None
    right: str | None
    report: CompareOut | None = Field(description="null when only one side has a run at this place")


CompareOut.model_rebuild()  # the two refer to each other
VerifyOut.model_rebuild()


class ExportQuery(Schema):
    spawned: bool = Field(False, description="nest the bundles of its branches and child runs (and theirs)")


class CompareQuery(Schema):
    other: TraceId = Field(description="the trace id of the run to compare with")


# Declared before /runs/{trace_id} routes of the runs router so "import" is not read as a trace id.
@router.post(
    "/runs/import",
    response={201: RunOut, **errors(400, 415, 403, 409, 413, 422)},
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
                    "VerifyRun": {
                        "operationId": "replay_api_run_verify_endpoint",
                        "parameters": {"trace_id": "$response.body#/trace_id"},
                    },
                    "ForkRun": {
                        "operationId": "replay_api_run_fork_endpoint",
                        "parameters": {"trace_id": "$response.body#/trace_id"},
                        "requestBody": {"step": 0},
                    },
                    "ExportRun": {
                        "operationId": "replay_api_run_export",
                        "parameters": {"trace_id": "$response.body#/trace_id"},
                        "description": "export the imported run again",
                    },
                }
            }
        }
    },
)
def run_import(request: HttpRequest, bundle: Body[TraceBundle]) -> Status[dict[str, Any]]:
    principal = caller(request)
    run = bundle_import(bundle=bundle, user=principal.user, role=principal.primary_role)
    return Status(201, run_out(run_or_404(run.trace_id)))  # the import rewrote created_at after create


@router.post(
    "/runs/{trace_id}/fork",
    response={201: RunOut, **errors(400, 403, 404, 413, 415, 422)},
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
                    "CompareWithParent": {
                        "operationId": "replay_api_run_compare_endpoint",
                        "parameters": {
                            "path.trace_id": "$response.body#/trace_id",
                            "query.other": "$response.body#/parent_trace_id",
                        },
                        "description": "the fork against the run it was forked from",
                    },
                    "VerifyRun": {
                        "operationId": "replay_api_run_verify_endpoint",
                        "parameters": {"trace_id": "$response.body#/trace_id"},
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
def run_fork_endpoint(request: HttpRequest, trace_id: TraceId, body: ForkIn) -> Status[dict[str, Any]]:
    principal = caller(request)
    child = run_fork(
        run=run_or_404(trace_id),
        step=body.step,
        state=body.state,
        version=body.version,
        user=principal.user,
        role=principal.primary_role,
    )
    return Status(201, run_out(child))


@router.post("/runs/{trace_id}/verify", response={200: VerifyOut, **errors(403, 404, 422)}, auth=requires(VIEW))
def run_verify_endpoint(request: HttpRequest, trace_id: TraceId) -> dict[str, Any]:
    return run_verify(run=run_or_404(trace_id)).as_dict()


@router.get("/runs/{trace_id}/compare", response={200: CompareOut, **errors(403, 404, 422)}, auth=requires(VIEW))
def run_compare_endpoint(request: HttpRequest, trace_id: TraceId, query: Query[CompareQuery]) -> dict[str, Any]:
    return run_compare(left=run_or_404(trace_id), right=run_or_404(query.other)).as_dict()


@router.get(
    "/runs/{trace_id}/export",
    response={200: TraceBundle, **errors(403, 404, 422)},
    auth=requires(VIEW),
    openapi_extra={
        "responses": {
            200: {
                "links": {
                    "ImportRun": {
                        "operationId": "replay_api_run_import",
                        "requestBody": "$response.body",
                        "description": "import the bundle elsewhere, or here once the run is gone (409 if it exists)",
                        "x-schemathesis": {"merge_body": False},
                    }
                }
            }
        }
    },
)
def run_export(request: HttpRequest, trace_id: TraceId, query: Query[ExportQuery]) -> dict[str, Any]:
    return bundle_export(run=run_or_404(trace_id), spawned=query.spawned)
