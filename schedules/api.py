"""The JSON API for schedules (under /api/schedules): list, create, read, change, delete, pause, resume,
trigger now, backfill, and a schedule's fires."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema, Status

from cmo_site.shared.api import MAX_INT, StrictIn, caller, check_storable, errors, requires
from cmo_site.shared.permissions import OPERATE, VIEW
from schedules import selectors, services

router = Router(tags=["schedules"])

Overlap = Literal["skip", "buffer_one", "allow_all", "cancel_other"]


class ScheduleIn(StrictIn):
    graph: str = Field(max_length=100)
    version: int | None = Field(None, ge=1, le=MAX_INT, description="null: the latest version at each slot")
    input: Any = Field(default_factory=dict, description="the run input, checked against the graph's input schema")
    cron: str = Field("", max_length=200, description='a cron expression, e.g. "*/15 * * * *" (or an interval)')
    interval_seconds: int | None = Field(None, ge=1, le=MAX_INT, description="a fixed interval (or a cron)")
    timezone: str = Field("UTC", max_length=64, description="the IANA time zone the cron expression reads in")
    jitter_seconds: int = Field(0, ge=0, le=MAX_INT, description="delay each slot by up to this much")
    overlap: Overlap = Field("skip", description="what a slot does while a run of the schedule is active")
    catchup: Literal["all", "latest"] = Field("all", description="after downtime: every missed slot, or the latest")
    catchup_window_seconds: int = Field(60, ge=1, le=MAX_INT, description="how late a slot may still fire")
    description: str = Field("", max_length=500)
    concurrency: dict[str, Any] | None = Field(
        None, description="its runs' key and limits, as a graph declares them: {\"key\": \"input.x\", \"limit\": 1}"
    )
    budget: dict[str, Any] | None = Field(
        None, description='its runs\' model budget instead of the graph\'s: {"tokens": N, "cost_usd": X}'
    )


class ScheduleCreateIn(ScheduleIn):
    name: str = Field(max_length=100, pattern=r"^[-a-zA-Z0-9_]+$")
    paused: bool = False


class ScheduleOut(Schema):
    name: str
    description: str
    graph: str
    version: int | None
    input: Any
    cron: str
    interval_seconds: int | None
    timezone: str
    jitter_seconds: int
    overlap: Overlap
    catchup: Literal["all", "latest"]
    catchup_window_seconds: int
    concurrency: dict[str, Any] | None
    budget: dict[str, Any] | None
    paused: bool
    note: str
    owner: str | None
    owner_role: str
    next_fire_times: list[dt.datetime] = Field(description="the next five (none while paused)")
    created_at: dt.datetime
    updated_at: dt.datetime


class ScheduleListOut(Schema):
    schedules: list[ScheduleOut]


class FireOut(Schema):
    slot: dt.datetime
    kind: Literal["slot", "trigger", "backfill"]
    outcome: Literal["started", "skipped", "buffered", "failed", "missed"]
    trace_id: str | None
    run_status: str | None
    actor: str
    reason: str
    created_at: dt.datetime


class FireListOut(Schema):
    fires: list[FireOut]


class PauseIn(StrictIn):
    note: str = Field("", max_length=500, description="why")


class BackfillIn(StrictIn):
    start: dt.datetime = Field(description="the first slot's earliest time, with a time zone")
    end: dt.datetime = Field(description="the last slot's latest time, at the latest now")


class BackfillOut(Schema):
    started: int
    failed: int
    already: int = Field(description="slots that had fired already (left as they were)")


class FireQuery(Schema):
    limit: int = Field(50, ge=1, le=500)


def _fields(body: ScheduleIn, request: HttpRequest) -> services.Fields:
    principal = caller(request)
    data = body.model_dump()
    data["input"] = check_storable(data["input"], what="the input")
    return services.schedule_check(data=data, user=principal.user, role=principal.primary_role)


@router.get("/schedules", response={200: ScheduleListOut, **errors(403)}, auth=requires(VIEW))
def schedule_list(request: HttpRequest) -> dict[str, Any]:
    """Every schedule, by name."""
    return {"schedules": [selectors.schedule_out(s) for s in selectors.schedule_list()]}


@router.post("/schedules", response={201: ScheduleOut, **errors(400, 403, 409, 413, 415, 422)}, auth=requires(OPERATE))
def schedule_create(request: HttpRequest, body: ScheduleCreateIn) -> Status[dict[str, Any]]:
    """Create a schedule; you own it, and its runs execute with the role you act with now."""
    principal = caller(request)
    fields = _fields(body, request)
    schedule = services.schedule_create(
        name=body.name, fields=fields, user=principal.user, role=principal.primary_role, paused=body.paused
    )
    return Status(201, selectors.schedule_out(schedule))


@router.get("/schedules/{name}", response={200: ScheduleOut, **errors(403, 404)}, auth=requires(VIEW))
def schedule_get(request: HttpRequest, name: str) -> dict[str, Any]:
    return selectors.schedule_out(selectors.schedule_or_404(name))


@router.put(
    "/schedules/{name}",
    response={200: ScheduleOut, **errors(400, 403, 404, 413, 415, 422)},
    auth=requires(OPERATE),
)
def schedule_update(request: HttpRequest, name: str, body: ScheduleIn) -> dict[str, Any]:
    """Replace what a schedule does and when; you become its owner (its runs execute with your role)."""
    principal = caller(request)
    schedule = selectors.schedule_or_404(name)
    fields = _fields(body, request)
    updated = services.schedule_update(
        schedule=schedule, fields=fields, user=principal.user, role=principal.primary_role
    )
    return selectors.schedule_out(updated)


class DeletedOut(Schema):
    name: str
    fires_deleted: int = Field(description="its record of fires, deleted with it (its runs stay)")


@router.delete("/schedules/{name}", response={200: DeletedOut, **errors(403, 404)}, auth=requires(OPERATE))
def schedule_delete(request: HttpRequest, name: str) -> dict[str, Any]:
    """Delete a schedule and its record of fires (its runs stay)."""
    schedule = selectors.schedule_or_404(name)
    fires = schedule.fires.count()
    schedule.delete()
    return {"name": name, "fires_deleted": fires}


@router.post(
    "/schedules/{name}/pause",
    response={200: ScheduleOut, **errors(400, 403, 404, 413, 415, 422)},
    auth=requires(OPERATE),
)
def schedule_pause(request: HttpRequest, name: str, body: PauseIn) -> dict[str, Any]:
    schedule = selectors.schedule_or_404(name)
    schedule = services.schedule_pause(schedule=schedule, user=caller(request).user, note=body.note)
    return selectors.schedule_out(schedule)


@router.post("/schedules/{name}/resume", response={200: ScheduleOut, **errors(403, 404)}, auth=requires(OPERATE))
def schedule_resume(request: HttpRequest, name: str) -> dict[str, Any]:
    """Fire again from the next slot after now (the slots of the pause are not caught up)."""
    schedule = services.schedule_resume(schedule=selectors.schedule_or_404(name), user=caller(request).user)
    return selectors.schedule_out(schedule)


@router.post("/schedules/{name}/trigger", response={201: FireOut, **errors(403, 404)}, auth=requires(OPERATE))
def schedule_trigger(request: HttpRequest, name: str) -> Status[dict[str, Any]]:
    """Fire a slot now under the overlap policy; the run executes as you."""
    principal = caller(request)
    fire = services.schedule_trigger(
        schedule=selectors.schedule_or_404(name), user=principal.user, role=principal.primary_role
    )
    return Status(201, selectors.fire_out(fire))


@router.post(
    "/schedules/{name}/backfill",
    response={200: BackfillOut, **errors(400, 403, 404, 413, 415, 422)},
    auth=requires(OPERATE),
)
def schedule_backfill(request: HttpRequest, name: str, body: BackfillIn) -> dict[str, int]:
    """Fire every slot in a past range (at most 1,000) once each; the runs execute as you."""
    principal = caller(request)
    return services.schedule_backfill(
        schedule=selectors.schedule_or_404(name),
        start=body.start,
        end=body.end,
        user=principal.user,
        role=principal.primary_role,
    )


@router.get("/schedules/{name}/fires", response={200: FireListOut, **errors(403, 404, 422)}, auth=requires(VIEW))
def schedule_fires(request: HttpRequest, name: str, query: Query[FireQuery]) -> dict[str, Any]:
    """Its latest fires (slots), newest first, with their runs."""
    schedule = selectors.schedule_or_404(name)
    return {"fires": [selectors.fire_out(f) for f in selectors.recent_fires(schedule=schedule, limit=query.limit)]}
