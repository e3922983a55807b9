"""Replay pages: verify a run, compare two runs, fork from a step, export and import trace bundles.

Verification and comparison only read (any signed-in role); fork and import write runs (operators and admins).
"""

from __future__ import annotations

import json

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from cmo_site.shared.permissions import OPERATE, VIEW, primary_role, role_required
from replay import selectors
from replay.bundles import BundleConflict, BundleError, bundle_export, bundle_import
from replay.forms import ForkForm, ImportForm
from replay.services import ReplayError, run_fork
from runs.models import Run, Step
from runs.services.graphs import GraphNotRunnable
from runs.services.run_store import step_state


def _run(trace_id: str) -> Run:
    return get_object_or_404(Run.objects.select_related("graph", "parent"), trace_id=trace_id)


@require_http_methods(["GET", "POST"])
@role_required(VIEW)
def run_verify_view(request: HttpRequest, trace_id: str) -> HttpResponse:
    """Re-execute the run with no effects; the run page's script posts for the fragment (X-CMO-Fragment). The form
    without the script posts, and is redirected to the report's page (POST-redirect-GET: it only reads)."""
    run = _run(trace_id)
    fragment = request.headers.get("X-CMO-Fragment") == "verify"
    if request.method == "POST" and not fragment:
        return redirect("replay:run_verify", trace_id=run.trace_id)
    context = {"run": run, "report": selectors.verify_view(run=run)}
    return render(request, "replay/_verify.html" if fragment else "replay/verify.html", context)


@require_GET
@role_required(VIEW)
def compare(request: HttpRequest) -> HttpResponse:
    ids = {side: request.GET.get(side, "").strip() for side in ("left", "right")}
    runs: dict[str, Run | None] = {}
    errors: dict[str, str] = {}
    for side, trace_id in ids.items():
        runs[side] = selectors.run_find(trace_id=trace_id) if trace_id else None
        if trace_id and runs[side] is None:
            errors[side] = f"No run has the trace id {trace_id!r}."
    left, right, step = runs["left"], runs["right"], request.GET.get("step", "")
    report = selectors.compare_view(left=left, right=right, step=step) if left and right else None
    context = {"ids": ids, "errors": errors, "report": report, "recent": selectors.recent_runs()}
    return render(request, "replay/compare.html", context, status=404 if errors else 200)


@require_http_methods(["GET", "POST"])
@role_required(OPERATE)
def run_fork_view(request: HttpRequest, trace_id: str) -> HttpResponse:
    run = _run(trace_id)
    versions = selectors.fork_versions(run=run)
    load_error = ""
    if request.method == "POST":
        form = ForkForm(request.POST, versions=versions)
        if form.is_valid():
            data = form.cleaned_data
            try:
                child = run_fork(
                    run=run,
                    step=data["step"],
                    state=data["state"],
                    version=data["version"],
                    user=request.user,
                    role=primary_role(request.user),
                )
            except (ReplayError, GraphNotRunnable) as exc:
                form.add_error(None, str(exc))
            else:
                messages.success(request, f"Forked run {run.trace_id} at step {data['step']}: this is the new run.")
                return redirect("runs:run_detail", trace_id=child.trace_id)
    else:
        step_raw = request.GET.get("step", "")
        step = int(step_raw) if step_raw.isdigit() else run.step_index - 1
        try:
            state_text = json.dumps(step_state(run_id=run.pk, index=step), indent=2, sort_keys=True)
        except Step.DoesNotExist:
            state_text, load_error = "", f"Run {run.trace_id} has no step {step} to fork from."
        form = ForkForm(initial={"step": step, "state": state_text, "version": run.graph.version}, versions=versions)
    status = 400 if form.is_bound else 404 if load_error else 200
    step_value = form["step"].value()
    after = int(step_value) if str(step_value).isdigit() else -1
    context = {
        "run": run,
        "form": form,
        "load_error": load_error,
        "steps": selectors.fork_steps(run=run),
        "continuation": selectors.fork_continuation(run=run, step=after),
    }
    return render(request, "replay/fork.html", context, status=status)


@require_GET
@role_required(VIEW)
def run_export_view(request: HttpRequest, trace_id: str) -> HttpResponse:
    run = _run(trace_id)
    bundle = bundle_export(run=run, spawned=request.GET.get("spawned") == "1")
    response = JsonResponse(bundle, json_dumps_params={"indent": 2})
    response["Content-Disposition"] = f'attachment; filename="cmo-trace-{run.trace_id}.json"'
    return response


@require_http_methods(["GET", "POST"])
@role_required(OPERATE)
def run_import_view(request: HttpRequest) -> HttpResponse:
    form = ImportForm(request.POST, request.FILES) if request.method == "POST" else ImportForm()
    existing = None
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                run = bundle_import(
                    bundle=form.cleaned_data["bundle"], user=request.user, role=primary_role(request.user)
                )
            except BundleConflict as exc:
                existing = selectors.run_find(trace_id=form.cleaned_data["bundle"]["run"]["trace_id"])
                form.add_error("bundle", str(exc))
                status = 409
            except BundleError as exc:
                form.add_error("bundle", str(exc))
            else:
                messages.success(request, f"Imported run {run.trace_id} from the trace bundle.")
                return redirect("runs:run_detail", trace_id=run.trace_id)
    upload = request.FILES.get("bundle")
    context = {"form": form, "existing": existing, "file_name": upload.name if upload else ""}
    return render(request, "replay/import.html", context, status=status)
