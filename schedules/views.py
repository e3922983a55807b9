"""The schedules' pages: the list, a new schedule, a schedule (its next fire times and recent fires) and its
actions (pause, resume, trigger now, backfill, edit). Thin: the services decide, these render."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.utils.dateparse import parse_datetime
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cmo_site.shared.permissions import OPERATE, VIEW, can, primary_role, role_required
from runs.engine.errors import CMOError
from runs.engine.json_input import JSONInputError, parse_json
from runs.selectors import graph_choices
from schedules import selectors, services
from schedules.models import Schedule

NAME_MAX = 100


def _form_data(post: QueryDict) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The form's fields as schedule_check reads them, and the errors of the fields it cannot read."""
    errors: list[dict[str, str]] = []
    data: dict[str, Any] = {
        k: post.get(k, "").strip()
        for k in ("graph", "cron", "timezone", "overlap", "catchup", "description")
    }
    for key in ("version", "interval_seconds", "jitter_seconds", "catchup_window_seconds"):
        raw = post.get(key, "").strip()
        if raw and not raw.isdigit():
            errors.append({"field": key, "message": "a whole number"})
        data[key] = int(raw) if raw.isdigit() else None
    if post.get("timing") == "interval":
        data["cron"] = ""
    else:
        data["interval_seconds"] = None
    try:
        data["input"] = parse_json(post.get("input", "") or "{}", what="the input")
    except JSONInputError as exc:
        errors.append({"field": "input", "message": exc.message})
    concurrency = post.get("concurrency", "").strip()
    try:
        data["concurrency"] = parse_json(concurrency, what="the concurrency") if concurrency else None
    except JSONInputError as exc:
        errors.append({"field": "concurrency", "message": exc.message})
    budget = post.get("budget", "").strip()
    try:
        data["budget"] = parse_json(budget, what="the budget") if budget else None
    except JSONInputError as exc:
        errors.append({"field": "budget", "message": exc.message})
    return data, errors


def _form(request: HttpRequest, *, schedule: Schedule | None) -> HttpResponse:
    """The new-schedule form (``schedule`` None) or the edit form, and what its POST does."""
    errors: list[dict[str, str]] = []
    values: dict[str, Any] = {
        "input": "{}", "timezone": "UTC", "timing": "cron", "catchup_window_seconds": 60, "jitter_seconds": 0
    }
    if schedule is not None:
        values = {
            **{f: getattr(schedule, f) for f in ("cron", "interval_seconds", "timezone", "jitter_seconds",
                                                  "overlap", "catchup", "catchup_window_seconds", "description",
                                                  "version")},
            "graph": schedule.graph_name,
            "input": json.dumps(schedule.input, indent=2),
            "concurrency": json.dumps(schedule.concurrency) if schedule.concurrency else "",
            "budget": json.dumps(schedule.budget) if schedule.budget else "",
            "timing": "interval" if schedule.interval_seconds else "cron",
        }
    if request.method == "POST":
        values = {**request.POST.dict()}
        data, errors = _form_data(request.POST)
        name = request.POST.get("name", "").strip() if schedule is None else schedule.name
        if schedule is None and not (0 < len(name) <= NAME_MAX and name.replace("-", "").replace("_", "").isalnum()):
            errors.append({"field": "name", "message": f"1 to {NAME_MAX} letters, digits, - or _"})
        if not errors:
            role = primary_role(request.user)
            try:
                fields = services.schedule_check(data=data, user=request.user, role=role)
                if schedule is None:
                    saved = services.schedule_create(name=name, fields=fields, user=request.user, role=role)
                else:
                    saved = services.schedule_update(schedule=schedule, fields=fields, user=request.user, role=role)
            except services.ScheduleInvalid as exc:
                errors = exc.details
            except CMOError as exc:
                errors = [{"field": "name", "message": str(exc)}]
            else:
                messages.success(request, f"Schedule {saved.name!r} saved; you own it.")
                return redirect("schedules:detail", name=saved.name)
    context = {
        "schedule": schedule,
        "values": values,
        "errors": errors,
        "graphs": list(graph_choices()),
        "overlaps": Schedule.OVERLAP_CHOICES,
        "catchups": Schedule.CATCHUP_CHOICES,
    }
    return render(request, "schedules/schedule_form.html", context, status=422 if errors else 200)


@require_GET
@role_required(VIEW)
def schedule_list(request: HttpRequest) -> HttpResponse:
    rows = [{"schedule": s, "next": services.next_fire_times(schedule=s, n=1)} for s in selectors.schedule_list()]
    return render(request, "schedules/schedule_list.html", {"rows": rows, "can_operate": can(request.user, OPERATE)})


@require_http_methods(["GET", "POST"])
@role_required(OPERATE)
def schedule_new(request: HttpRequest) -> HttpResponse:
    return _form(request, schedule=None)


@require_http_methods(["GET", "POST"])
@role_required(OPERATE)
def schedule_edit(request: HttpRequest, name: str) -> HttpResponse:
    return _form(request, schedule=selectors.schedule_or_404(name))


@require_GET
@role_required(VIEW)
def schedule_detail(request: HttpRequest, name: str) -> HttpResponse:
    schedule = selectors.schedule_or_404(name)
    context = {
        "schedule": schedule,
        "next": services.next_fire_times(schedule=schedule),
        "fires": selectors.recent_fires(schedule=schedule),
        "active": services.active_runs(schedule=schedule).count(),
        "can_operate": can(request.user, OPERATE),
        "input_text": json.dumps(schedule.input, indent=2),
    }
    return render(request, "schedules/schedule_detail.html", context)


@require_POST
@role_required(OPERATE)
def schedule_action(request: HttpRequest, name: str, action: str) -> HttpResponse:
    """Pause, resume or trigger a schedule from its page."""
    schedule = selectors.schedule_or_404(name)
    if action == "pause":
        services.schedule_pause(schedule=schedule, user=request.user, note=request.POST.get("note", "")[:500])
        messages.success(request, f"Schedule {name!r} paused.")
    elif action == "resume":
        services.schedule_resume(schedule=schedule, user=request.user)
        messages.success(request, f"Schedule {name!r} resumed: it fires from its next slot.")
    elif action == "trigger":
        fire = services.schedule_trigger(schedule=schedule, user=request.user, role=primary_role(request.user))
        run = f" run {fire.run.trace_id}" if fire.run else ""
        messages.success(request, f"Triggered now: {fire.outcome}{run}. {fire.reason}".strip())
    elif action == "delete":
        schedule.delete()
        messages.success(request, f"Schedule {name!r} deleted (its runs stay).")
        return redirect("schedules:list")
    else:
        raise Http404(f"no action {action!r} on schedules")
    return redirect("schedules:detail", name=name)


def _moment(raw: str) -> dt.datetime | None:
    value = parse_datetime(raw.strip()) if raw else None
    return value.replace(tzinfo=dt.UTC) if value is not None and value.tzinfo is None else value


@require_POST
@role_required(OPERATE)
def schedule_backfill(request: HttpRequest, name: str) -> HttpResponse:
    """Backfill from the page (times in UTC)."""
    schedule = selectors.schedule_or_404(name)
    start, end = _moment(request.POST.get("start", "")), _moment(request.POST.get("end", ""))
    if start is None or end is None:
        messages.error(request, "Backfill needs a start and an end (UTC).")
        return redirect("schedules:detail", name=name)
    try:
        counts = services.schedule_backfill(
            schedule=schedule, start=start, end=end, user=request.user, role=primary_role(request.user)
        )
    except services.BackfillRefused as exc:
        messages.error(request, f"Backfill refused: {exc}")
    else:
        started, failed, already = counts["started"], counts["failed"], counts["already"]
        messages.success(request, f"Backfill: {started} started, {failed} failed, {already} already fired.")
    return redirect("schedules:detail", name=name)
