"""Dashboard pages: parse, authorize (cmo_site.shared.permissions), call a selector or service, render."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cmo_site.shared.error_pages import not_found_page
from cmo_site.shared.permissions import OPERATE, VIEW, can, primary_role, role_required
from cmo_site.shared.refusals import refusal_keep, refusal_take
from runs import lanes, selectors, step_view
from runs.engine import statemachine as sm
from runs.engine.errors import CMOError
from runs.engine.json_input import JSONInputError, parse_json
from runs.llm.usage import usage_summary
from runs.models import Graph, Run, Signal
from runs.services import versions
from runs.services.graphs import GraphNotRunnable
from runs.services.runs import InvalidBudget, InvalidInput, input_errors, run_abort, run_start
from runs.services.signals import signal_send
from runs.specialists.registry import specialist_caps


def _when(value: str, *, end: bool = False) -> dt.datetime | None:
    """A date (a whole day; ``end`` means the day after) or a datetime from a filter field."""
    if not value:
        return None
    try:
        day = parse_date(value)
        moment = parse_datetime(value) if day is None else None
    except ValueError:
        return None
    if day is not None:
        moment = dt.datetime.combine(day + dt.timedelta(days=1 if end else 0), dt.time())
    if moment is None:
        return None
    try:
        # In UTC: PostgreSQL refuses offsets past +-15:59 (a 500 for "+19:11" before).
        return moment.astimezone(dt.UTC) if timezone.is_aware(moment) else timezone.make_aware(moment, dt.UTC)
    except (OverflowError, ValueError):
        return None


RUN_KINDS = (Run.KIND_RUN, Run.KIND_CHILD, Run.KIND_BRANCH)
TRACE_ID = re.compile(r"[0-9a-f]{32}")
SHORT_ID = re.compile(rf"[0-9a-f]{{{selectors.SHORT_ID_MIN},31}}")
SHORT_ID_CHOICES = 20
SIGNAL_NAME_MAX = Signal._meta.get_field("name").max_length or 100


def _filters(request: HttpRequest) -> tuple[selectors.RunFilters, list[str]]:
    """The runs list's filters from the query string, and a message per search part that is not valid (the
    page shows them and leaves those parts out). ``field`` may repeat (``field=service=search``): all must match."""
    q = request.GET
    version = q.get("version", "")
    status = q.get("status", "")
    kind = q.get("kind", "")
    fields, error, problems = selectors.parse_run_search(q.getlist("field"), q.get("error", ""))
    filters = selectors.RunFilters(
        status=status if status in sm.STATUSES else "",
        graph=q.get("graph", "").strip(),
        version=int(version) if version.isdigit() else None,
        since=_when(q.get("since", "")),
        until=_when(q.get("until", ""), end=True),
        trace=q.get("trace", "").strip(),
        spawned_by=q.get("spawned_by", "").strip().lower()[:32],
        kind=kind if kind in RUN_KINDS else "",
        fields=fields,
        error=error,
    )
    return filters, problems


@role_required(VIEW)
def home(request: HttpRequest) -> HttpResponse:
    summary = selectors.dashboard_summary(now=timezone.now())
    peak = max([max(d["started"], d["completed"], d["failed"]) for d in summary["days"]] + [1])
    slowest_peak = max([s["avg_seconds"] for s in summary["slowest"]] + [0.001])
    recent = selectors.run_list(filters=selectors.RunFilters(), limit=8).runs
    capacity = {
        "workers": selectors.workers_alive(),
        "queued": selectors.queue_depth(),
        "caps": selectors.caps_waiting(),
        "specialists": specialist_caps(),
    }
    llm = usage_summary(days=7)
    return render(
        request,
        "runs/home.html",
        {
            "summary": summary,
            "peak": peak,
            "slowest_peak": slowest_peak,
            "recent": recent,
            "capacity": capacity,
            "llm": llm,
        },
    )


def _field_boxes(request: HttpRequest) -> list[dict[str, str]]:
    """The field conditions as typed (a bad one too, to correct it, with its fault), and an empty box for one more."""
    boxes = []
    for text in [t for t in request.GET.getlist("field") if t.strip()][: selectors.SEARCH_FIELDS_MAX]:
        try:
            selectors.parse_field_search(text)
        except selectors.SearchError as exc:
            boxes.append({"text": text, "problem": str(exc)})
        else:
            boxes.append({"text": text, "problem": ""})
    return [*boxes, {"text": "", "problem": ""}]


@role_required(VIEW)
def run_list(request: HttpRequest) -> HttpResponse:
    filters, search_problems = _filters(request)
    page = selectors.run_list(
        filters=filters, sort=request.GET.get("sort", "-created"), cursor=request.GET.get("c", "")
    )
    counts = selectors.run_status_counts(filters=filters)
    notes = selectors.run_slot_notes(runs=page.runs)
    for run in page.runs:
        run.slot_note = notes.get(run.pk, "")  # type: ignore[attr-defined]
    template = "runs/_run_table.html" if request.GET.get("partial") else "runs/run_list.html"
    params = request.GET.copy()
    params.pop("c", None)
    params.pop("partial", None)
    others = params.copy()
    others.pop("status", None)  # the status links keep every other filter and the search
    return render(
        request,
        template,
        {
            "page": page,
            "counts": counts,
            "filters": filters,
            "field_boxes": _field_boxes(request),
            "search_problems": search_problems,
            "graphs": selectors.graph_choices(),
            "statuses": sm.STATUSES,
            "kinds": [(Run.KIND_RUN, "runs only"), (Run.KIND_CHILD, "child runs"), (Run.KIND_BRANCH, "branches")],
            "spawner_link": filters.spawned_by if TRACE_ID.fullmatch(filters.spawned_by) else "",
            "query": params.urlencode(),
            "status_query": others.urlencode(),
            "paged": bool(request.GET.get("c")),
            "can_operate": can(request.user, OPERATE),
        },
    )


@require_http_methods(["GET", "POST"])
@role_required(OPERATE)
def run_new(request: HttpRequest) -> HttpResponse:
    choices = selectors.graph_choices()
    name = request.POST.get("graph") or request.GET.get("graph") or next(iter(choices), "")
    version_raw = request.POST.get("version") or request.GET.get("version") or ""
    graph = Graph.objects.filter(name=name, version=int(version_raw)).first() if version_raw.isdigit() else None
    graph = graph or Graph.objects.filter(name=name).order_by("-version").first()
    errors: list[dict[str, str]] = []
    text = json.dumps(
        selectors.input_example(schema=graph.definition.get("input_schema") or {}) if graph else {}, indent=2
    )
    if request.method == "POST" and graph is not None:
        text = request.POST.get("input", "")
        try:
            data = parse_json(text or "{}", what="the input")
        except JSONInputError as exc:
            errors = [{"path": "$", "message": exc.message}]
        else:
            errors = input_errors(graph=graph, data=data)
        budget_text = request.POST.get("budget", "").strip()
        budget = None
        try:
            budget = parse_json(budget_text, what="the budget") if budget_text else None
        except JSONInputError as exc:
            errors = [*errors, {"path": "budget", "message": exc.message}]
        if not errors:
            try:
                run = run_start(
                    graph_name=graph.name,
                    version=graph.version,
                    data=data,
                    user=request.user,
                    role=primary_role(request.user),
                    budget=budget,
                )
            except InvalidInput as exc:
                errors = exc.errors
            except InvalidBudget as exc:
                errors = [{"path": "budget", "message": str(exc)}]
            except GraphNotRunnable as exc:
                errors = [{"path": "$", "message": str(exc)}]
            else:
                messages.success(request, f"Run {run.trace_id} started.")
                return redirect("runs:run_detail", trace_id=run.trace_id)
    context = {
        "choices": choices,
        "graph": graph,
        "input_text": text,
        "budget_text": request.POST.get("budget", "") if request.method == "POST" else "",
        "errors": errors,
    }
    return render(request, "runs/run_new.html", context, status=400 if errors else 200)


@role_required(VIEW)
def run_detail(request: HttpRequest, trace_id: str) -> HttpResponse:
    run = Run.objects.select_related("graph", "parent").filter(trace_id=trace_id).first()
    if run is None:
        return _run_by_prefix(request, trace_id.lower())
    refused = refusal_take(request, form=f"signal-{run.pk}")
    return _run_page(request, run, signal_error=refused.get("error", ""), signal_text=refused.get("payload"))


def _run_by_prefix(request: HttpRequest, prefix: str) -> HttpResponse:
    """A short id (6 or more hex characters, as the lists show 12): one run redirects to it, several are listed
    (300 Multiple Choices), none is the 404."""
    if not SHORT_ID.fullmatch(prefix):
        hint = f"; a short id has {selectors.SHORT_ID_MIN} to 32 hex characters" if len(prefix) < 32 else ""
        return not_found_page(request, reason=f"there is no run {prefix}{hint}")
    found = selectors.runs_by_prefix(prefix=prefix, limit=SHORT_ID_CHOICES + 1)
    if len(found) == 1:
        query = request.META.get("QUERY_STRING", "")
        return redirect(reverse("runs:run_detail", args=[found[0].trace_id]) + (f"?{query}" if query else ""))
    if not found:
        return not_found_page(request, reason=f"no run's id starts with {prefix}")
    context = {"prefix": prefix, "runs": found[:SHORT_ID_CHOICES], "more": len(found) > SHORT_ID_CHOICES}
    return render(request, "runs/run_choices.html", context, status=300)


def _started_via(run: Run) -> dict[str, str] | None:
    """The schedule or hook that started ``run`` (its context says), linked; None for anything else."""
    context = run.context if isinstance(run.context, dict) else {}
    for kind, route in (("schedule", "schedules:detail"), ("hook", "hooks:detail")):
        name = context.get(kind)
        if isinstance(name, str) and name:
            try:
                return {"kind": kind, "name": name, "url": reverse(route, args=[name])}
            except NoReverseMatch:
                return None  # not a name either could have (an edited bundle's history)
    return None


def _run_page(
    request: HttpRequest, run: Run, *, signal_error: str = "", signal_text: str | None = None
) -> HttpResponse:
    """The run page; after a refused signal, with ``signal_error`` and the payload as it was typed."""
    steps = selectors.run_steps_view(run=run)
    events = selectors.run_events_view(run=run)
    composition = lanes.run_composition(run=run, now=timezone.now())
    # A fork's own steps start after its fork step, so a step is found by its index, not its position.
    by_index = {s["index"]: s for s in steps}
    step_param = request.GET.get("step", "")
    current = int(step_param) if step_param.isdigit() else (steps[-1]["index"] if steps else 0)
    current = max(min(current, steps[-1]["index"]), steps[0]["index"]) if steps else 0
    page = {
        "run": selectors.run_header(run=run),
        "graph": selectors.graph_diagram(graph=run.graph),
        "steps": steps,
        "events": events,
        "current": current,
        "last_step": steps[-1]["index"] if steps else -1,
        "first_step": steps[0]["index"] if steps else 0,
        "last_event": events[-1]["id"] if events else 0,
        "socket": f"/ws/runs/{run.pk}/",
        "waits": composition["waits"],
        "lanes": composition["lanes"] is not None,
        "lanes_url": reverse("runs:run_lanes", args=[run.trace_id]),
        "slot_note": selectors.run_slot_notes(runs=[run]).get(run.pk, ""),
    }
    signal = composition["signal"]
    context = {
        "run": run,
        "page": page,
        "current_step": step_view.with_composition(run=run, step=by_index.get(current)),
        "events": events,
        "can_abort": can(request.user, OPERATE) and not run.is_terminal,
        "can_fork": can(request.user, OPERATE),
        "can_signal": can(request.user, OPERATE),
        "forks": selectors.run_forks(run=run),
        "started_via": _started_via(run),
        "wait_link": selectors.run_wait_link(run=run),
        "compare_with": selectors.compare_candidates(run=run),
        "composition": composition,
        "signal_error": signal_error,
        "signal_text": signal["example"] if signal_text is None and signal else signal_text,
        "has_llm": any(s["llm"] for s in steps),
        "move_targets": versions.move_targets(run=run) if can(request.user, OPERATE) and run.wait_reason else [],
    }
    return render(request, "runs/run_detail.html", context)


@require_POST
@role_required(OPERATE)
def run_move(request: HttpRequest, trace_id: str) -> HttpResponse:
    """Move the run to another version of its graph at its current step (runs.services.versions), then show it."""
    run = get_object_or_404(Run.objects.select_related("graph"), trace_id=trace_id)
    version = request.POST.get("version", "")
    try:
        number = int(version) if version.isdigit() else 0
        moved = versions.run_move_version(run=run, version=number, user=request.user, role=primary_role(request.user))
    except CMOError as exc:
        messages.error(request, f"The run was not moved: {exc}")
    else:
        messages.success(request, f"Run {moved.trace_id} moved to v{moved.graph.version} at step {moved.step_index}.")
    return redirect("runs:run_detail", trace_id=trace_id)


@require_GET
@role_required(VIEW)
def run_lanes(request: HttpRequest, trace_id: str) -> HttpResponse:
    """The timeline's lanes as the run page renders them: the fragment its script swaps in while branches run."""
    run = get_object_or_404(Run, trace_id=trace_id)
    composition = lanes.run_composition(run=run, now=timezone.now())
    if composition["lanes"] is None:
        raise Http404(f"run {trace_id} spawned no runs")
    return render(request, "runs/_lanes.html", {"run": run, "composition": composition})


@require_POST
@role_required(OPERATE)
def run_signal_view(request: HttpRequest, trace_id: str) -> HttpResponse:
    """Send a signal from the run page's form (runs.services.signals.signal_send); a refused one goes back to the
    run page (POST-redirect-GET), which says why (not JSON, an ended run, a schema mismatch) and keeps the payload."""
    run = get_object_or_404(Run.objects.select_related("graph", "parent"), trace_id=trace_id)
    name = request.POST.get("name", "").strip()
    text = request.POST.get("payload", "")
    try:
        if not name or len(name) > SIGNAL_NAME_MAX:
            raise JSONInputError(400, "malformed_request", f"a signal's name has 1 to {SIGNAL_NAME_MAX} characters")
        payload = parse_json(text, what="the signal's payload")
        signal = signal_send(run=run, name=name, payload=payload, actor=request.user.get_username())
    except CMOError as exc:
        refusal_keep(request, form=f"signal-{run.pk}", error=str(exc), payload=text)
        return redirect("runs:run_detail", trace_id=run.trace_id)
    signal.refresh_from_db(fields=["delivered_at"])
    outcome = "delivered" if signal.delivered_at else "kept until the run waits for it"
    messages.success(request, f"Signal {name!r} sent to run {run.trace_id}: {outcome}.")
    return redirect("runs:run_detail", trace_id=run.trace_id)


@require_GET
@role_required(VIEW)
def step_inspector(request: HttpRequest, trace_id: str, index: int) -> HttpResponse:
    """One step's inspector, as the run page renders it: the fragment its player swaps in when it moves."""
    run = get_object_or_404(Run, trace_id=trace_id)
    step = step_view.step_inspector(run=run, index=index)
    if step is None:
        raise Http404(f"run {trace_id} has no step {index}")
    return render(request, "runs/_step_inspector.html", {"step": step})


@require_http_methods(["GET", "POST"])
@role_required(OPERATE)
def run_abort_view(request: HttpRequest, trace_id: str) -> HttpResponse:
    """GET asks for confirmation; a POST aborts only with confirm=yes (the run page's dialog or this page sets it),
    else it is sent to the confirmation page."""
    run = get_object_or_404(Run.objects.select_related("graph"), trace_id=trace_id)
    if request.method == "GET" and not run.is_terminal:
        return render(request, "runs/run_abort.html", {"run": run})
    if request.method == "POST" and request.POST.get("confirm") != "yes":
        return redirect("runs:run_abort", trace_id=run.trace_id)
    if run.is_terminal:
        messages.error(request, f"Run {run.trace_id} has already finished ({run.status}).")
        return redirect("runs:run_detail", trace_id=run.trace_id)
    try:
        run_abort(run=run, actor=request.user.get_username())
    except sm.InvalidTransition:
        messages.error(request, f"Run {run.trace_id} has already finished ({run.status}).")
    else:
        messages.success(request, f"Abort requested for run {run.trace_id}.")
    return redirect("runs:run_detail", trace_id=run.trace_id)


@role_required(VIEW)
def graph_list(request: HttpRequest) -> HttpResponse:
    return render(request, "runs/graph_list.html", {"graphs": selectors.graph_summaries()})


@role_required(VIEW)
def graph_detail(request: HttpRequest, name: str) -> HttpResponse:
    versions = selectors.graph_versions(name=name)
    if not versions:
        raise Http404(f"no graph named {name}")
    version = request.GET.get("version", "")
    graph = next((g for g in versions if str(g.version) == version), versions[0])
    recent = selectors.run_list(filters=selectors.RunFilters(graph=name), limit=20).runs
    context: dict[str, Any] = {
        "graph": graph,
        "versions": versions,
        "diagram": selectors.graph_diagram(graph=graph),
        "recent": recent,
        "schema": json.dumps(graph.definition.get("input_schema") or {}, indent=2),
        "can_operate": can(request.user, OPERATE),
    }
    return render(request, "runs/graph_detail.html", context)
