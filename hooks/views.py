"""The hooks' pages: the list, the create form (operators), a hook's page (how to call it, its deliveries
and refusals), and its operator actions (rotate the secret, enable or disable).

A secret is rendered once, in the answer to the POST that made it (never stored in the session or a
message), with Cache-Control: no-store.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_POST

from cmo_site.shared.permissions import OPERATE, VIEW, can, primary_role, role_required
from hooks import examples, selectors
from hooks.forms import HookForm
from hooks.models import Hook
from hooks.services import HookError, hook_create, hook_rotate_secret, hook_update
from runs.engine.graph import GRAPHS
from runs.selectors import graph_choices


@role_required(VIEW)
def hook_list(request: HttpRequest) -> HttpResponse:
    context = {"hooks": selectors.hook_list(), "can_operate": can(request.user, OPERATE)}
    return render(request, "hooks/list.html", context)


@role_required(OPERATE)
def hook_new(request: HttpRequest) -> HttpResponse:
    graphs = sorted(set(graph_choices()) | {g.name for g in GRAPHS.all()})
    form = HookForm(request.POST or None, graphs=graphs)
    error = ""
    if request.method == "POST" and form.is_valid():
        try:
            hook, secret = hook_create(
                name=form.cleaned_data["name"],
                description=form.cleaned_data["description"],
                config=form.config(),
                user=request.user,  # type: ignore[arg-type]
                role=primary_role(request.user),
            )
        except HookError as exc:
            error = str(exc)
        else:
            return _detail(request, hook, secret=secret, status=201)
    status = 400 if request.method == "POST" else 200
    return render(request, "hooks/new.html", {"form": form, "error": error}, status=status)


@role_required(VIEW)
def hook_detail(request: HttpRequest, name: str) -> HttpResponse:
    return _detail(request, _get(name))


@require_POST
@role_required(OPERATE)
def hook_rotate(request: HttpRequest, name: str) -> HttpResponse:
    hook, secret = hook_rotate_secret(hook=_get(name), user=request.user, role=primary_role(request.user))  # type: ignore[arg-type]
    return _detail(request, hook, secret=secret)


@require_POST
@role_required(OPERATE)
def hook_enable(request: HttpRequest, name: str) -> HttpResponse:
    enabled = request.POST.get("enabled") == "1"
    hook_update(hook=_get(name), user=request.user, role=primary_role(request.user), enabled=enabled)  # type: ignore[arg-type]
    messages.success(request, f"Hook {name} is {'enabled' if enabled else 'disabled'}.")
    return redirect("hooks:detail", name=name)


def _get(name: str) -> Hook:
    try:
        return selectors.hook_get(name=name)
    except Hook.DoesNotExist:
        raise Http404(f"no hook named {name!r}") from None


def _detail(request: HttpRequest, hook: Hook, *, secret: str = "", status: int = 200) -> HttpResponse:
    url = request.build_absolute_uri(f"/api/hooks/{hook.name}")
    context: dict[str, Any] = {
        "hook": hook,
        "secret": secret,
        "call": examples.call_example(hook=hook, url=url),
        "deliveries": selectors.hook_deliveries(hook=hook),
        "refusals": selectors.hook_refusals(hook=hook),
        "can_operate": can(request.user, OPERATE),
    }
    response = render(request, "hooks/detail.html", context, status=status)
    if secret:
        add_never_cache_headers(response)
    return response
