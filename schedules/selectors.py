"""Reads for the schedules' API and pages."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.shortcuts import get_object_or_404

from schedules.models import Schedule, ScheduleFire
from schedules.services import next_fire_times

RECENT_FIRES = 50


def schedule_list() -> QuerySet[Schedule]:
    return Schedule.objects.select_related("owner").order_by("name")


def schedule_or_404(name: str) -> Schedule:
    return get_object_or_404(Schedule.objects.select_related("owner"), name=name)


def recent_fires(*, schedule: Schedule, limit: int = RECENT_FIRES) -> QuerySet[ScheduleFire]:
    return ScheduleFire.objects.filter(schedule=schedule).select_related("run").order_by("-slot")[:limit]


def schedule_out(schedule: Schedule) -> dict[str, Any]:
    """A schedule as the API shows it, with its next five fire times."""
    fields = (
        "name", "description", "version", "input", "cron", "interval_seconds", "timezone", "jitter_seconds",
        "overlap", "catchup", "catchup_window_seconds", "concurrency", "budget", "paused", "note", "owner_role",
        "created_at", "updated_at",
    )  # fmt: skip
    return {
        **{f: getattr(schedule, f) for f in fields},
        "graph": schedule.graph_name,
        "owner": schedule.owner.get_username() if schedule.owner else None,
        "next_fire_times": next_fire_times(schedule=schedule),
    }


def fire_out(fire: ScheduleFire) -> dict[str, Any]:
    return {
        "slot": fire.slot,
        "kind": fire.kind,
        "outcome": fire.outcome,
        "trace_id": fire.run.trace_id if fire.run else None,
        "run_status": fire.run.status if fire.run else None,
        "actor": fire.actor,
        "reason": fire.reason,
        "created_at": fire.created_at,
    }
