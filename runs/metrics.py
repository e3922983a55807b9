"""Metrics for the API: activity per day and today's summary. Days are UTC calendar days.

Every figure is an aggregate query (COUNT ... GROUP BY day or status); nothing
loops over runs in Python. What counts:
- runs: runs created that day;
- steps: steps executed that day (by start time);
- activities: activities recorded that day;
- errors: runs that ended FAILED or TIMED_OUT that day (aborts are a person's choice, not errors).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import Count, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from runs.engine import statemachine as sm
from runs.models import Activity, Run, RunEvent, Step
from runs.selectors import approvals_waiting_count

MAX_DAYS = 90
ERROR_STATUSES = (sm.FAILED, sm.TIMED_OUT)
TOP_EVENT_TYPES = 10


def _midnight(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _per_day(qs: QuerySet[Any], field: str, start: dt.datetime) -> dict[dt.date, int]:
    rows = (
        qs.filter(**{f"{field}__gte": start})
        .annotate(day=TruncDate(field, tzinfo=dt.UTC))
        .order_by()
        .values("day")
        .annotate(n=Count("id"))
    )
    return {row["day"]: row["n"] for row in rows}


def metrics_activity(*, days: int, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Runs, steps, errors and activities for each of the last ``days`` days (today included), oldest first.

    Four GROUP BY queries whatever the number of runs. ValueError unless 1 <= days <= MAX_DAYS.
    """
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    start = _midnight(now or timezone.now()) - dt.timedelta(days=days - 1)
    runs = _per_day(Run.objects.all(), "created_at", start)
    steps = _per_day(Step.objects.all(), "started_at", start)
    activities = _per_day(Activity.objects.all(), "created_at", start)
    errors = _per_day(Run.objects.filter(status__in=ERROR_STATUSES), "finished_at", start)
    out = []
    for i in range(days):
        day = (start + dt.timedelta(days=i)).date()
        out.append(
            {
                "day": day,
                "runs": runs.get(day, 0),
                "steps": steps.get(day, 0),
                "errors": errors.get(day, 0),
                "activities": activities.get(day, 0),
            }
        )
    return out


def metrics_summary(*, now: dt.datetime) -> dict[str, Any]:
    """Today's totals (UTC, midnight to ``now``), the error rate and the top event types.

    error_rate is failed / (completed + failed) among runs that ended today
    (FAILED and TIMED_OUT count as failed), 0.0 when none ended.
    """
    start = _midnight(now)
    ended = dict(
        Run.objects.filter(finished_at__gte=start, finished_at__lte=now, status__in=sm.TERMINAL)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    completed = ended.get(sm.COMPLETED, 0)
    failed = sum(ended.get(s, 0) for s in ERROR_STATUSES)
    activities = dict(
        Activity.objects.filter(created_at__gte=start, created_at__lte=now)
        .order_by()
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    top = (
        RunEvent.objects.filter(created_at__gte=start, created_at__lte=now)
        .order_by()
        .values("kind")
        .annotate(n=Count("id"))
        .order_by("-n", "kind")[:TOP_EVENT_TYPES]
    )
    return {
        "day": start.date(),
        "runs_started": Run.objects.filter(created_at__gte=start, created_at__lte=now).count(),
        "runs_completed": completed,
        "runs_failed": failed,
        "runs_aborted": ended.get(sm.ABORTED, 0),
        "runs_active": Run.objects.filter(status__in=sm.ACTIVE).count(),
        "steps": Step.objects.filter(started_at__gte=start, started_at__lte=now).count(),
        "activities": sum(activities.values()),
        "activity_errors": activities.get("failed", 0),
        "error_rate": round(failed / (completed + failed), 4) if completed + failed else 0.0,
        "approvals_waiting": approvals_waiting_count(),
        "top_event_types": [{"kind": row["kind"], "count": row["n"]} for row in top],
    }
