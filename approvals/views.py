"""The approvals inbox: waiting requests, one request's preview and decision, the history of decisions.

Everyone signed in may look; only approvers and admins may decide (a decide POST from anyone else is a 403).
Approving a high or critical request needs its confirmation box ticked (the page's script asks in a dialog).
A refused decision redirects to the request's page, which says why and keeps the reason as typed.
The decision's IP is the connection's REMOTE_ADDR (daphne's peer address); no proxy header is trusted.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from approvals import risk, selectors
from approvals.models import ApprovalRequest
from approvals.services import (
    ApprovalNotPending,
    ApprovalNotReady,
    ReasonRequired,
    ReasonTooLong,
    approval_decide,
)
from cmo_site.shared.permissions import APPROVE, VIEW, can, role_required
from cmo_site.shared.refusals import refusal_keep, refusal_take

INBOX_LIMIT = 200
HISTORY_PAGE_SIZE = 100
CONFIRM_LEVELS = (risk.HIGH, risk.CRITICAL)


@role_required(VIEW)
def inbox(request: HttpRequest) -> HttpResponse:
    template = "approvals/_inbox_list.html" if request.GET.get("partial") else "approvals/inbox.html"
    context = {
        "rows": selectors.inbox_rows(limit=INBOX_LIMIT),
        "count": selectors.pending_count(),
        "can_decide": can(request.user, APPROVE),
        "next": reverse("approvals:inbox"),
    }
    return render(request, template, context)


@role_required(VIEW)
def inbox_row(request: HttpRequest, pk: int) -> HttpResponse:
    """One inbox row, for the page's script when the socket says a request arrived; 404 once it has left."""
    waiting = selectors.waiting_get(pk=pk)
    if waiting is None:
        raise Http404("this request is not waiting")
    context = {
        "row": selectors.inbox_row(request=waiting),
        "can_decide": can(request.user, APPROVE),
        "next": reverse("approvals:inbox"),
    }
    return render(request, "approvals/_request_row.html", context)


@role_required(VIEW)
def detail(request: HttpRequest, pk: int) -> HttpResponse:
    refused = refusal_take(request, form=f"approval-{pk}")
    return _detail(
        request,
        _get(pk),
        error=refused.get("error", ""),
        reason=refused.get("reason", ""),
        next_url=refused.get("next", ""),
    )


@role_required(VIEW)
def history(request: HttpRequest) -> HttpResponse:
    page = selectors.history_page(page=request.GET.get("page"), per_page=HISTORY_PAGE_SIZE)
    context = {"rows": selectors.history_rows(page), "page": page, "count": selectors.pending_count()}
    return render(request, "approvals/history.html", context)


@require_POST
@role_required(APPROVE)
def decide(request: HttpRequest, pk: int) -> HttpResponse:
    approval = _get(pk)
    decision = request.POST.get("decision", "")
    reason = request.POST.get("reason", "")
    if decision not in ("approve", "reject"):
        return _refused(request, approval, "Choose Approve or Reject.", reason)
    if decision == "approve" and approval.level in CONFIRM_LEVELS and request.POST.get("confirm") != "yes":
        return _refused(request, approval, f"Tick the box to confirm approving a {approval.level} request.", reason)
    try:
        decided = approval_decide(
            request=approval, user=request.user, approve=decision == "approve", reason=reason, ip=_client_ip(request)
        )
    except ReasonRequired:
        return _refused(request, approval, "A reason is required to reject.", reason)
    except ReasonTooLong as exc:
        return _refused(request, approval, f"{str(exc).capitalize()}.", reason)
    except (ApprovalNotPending, ApprovalNotReady) as exc:
        return _refused(request, approval, str(exc), reason)
    messages.success(request, f"Approval #{decided.pk} {decided.status}: run {decided.run.trace_id[:12]} resumes.")
    return redirect(_next(request))


def _refused(request: HttpRequest, approval: ApprovalRequest, error: str, reason: str) -> HttpResponse:
    """Back to the request's page (POST-redirect-GET), which says why and keeps the reason as typed."""
    refusal_keep(request, form=f"approval-{approval.pk}", error=error, reason=reason, next=_next(request))
    return redirect("approvals:detail", pk=approval.pk)


def _get(pk: int) -> ApprovalRequest:
    try:
        return selectors.approval_get(pk=pk)
    except ApprovalRequest.DoesNotExist:
        raise Http404(f"no approval request #{pk}") from None


def _detail(
    request: HttpRequest, approval: ApprovalRequest, *, error: str = "", reason: str = "", next_url: str = ""
) -> HttpResponse:
    context: dict[str, Any] = {
        "r": approval,
        "row": selectors.inbox_row(request=approval),
        "decided_by": selectors.decided_by_label(approval),
        "waiting": selectors.approval_is_waiting(pk=approval.pk),
        "can_decide": can(request.user, APPROVE),
        "error": error,
        "reason": reason,
        "next": next_url or request.get_full_path(),
        "count": selectors.pending_count(),
    }
    return render(request, "approvals/detail.html", context)


def _next(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return reverse("approvals:inbox")


def _client_ip(request: HttpRequest) -> str | None:
    value = request.META.get("REMOTE_ADDR", "")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None
