"""Reads the approvals inbox and the navigation badge share."""

from __future__ import annotations

from django.db.models import Case, IntegerField, QuerySet, Value, When

from approvals import risk
from approvals.models import ApprovalRequest
from runs.engine import statemachine as sm

_RISK_ORDER = Case(
    *[When(level=level, then=Value(rank)) for level, rank in risk.LEVEL_RANK.items()],
    default=Value(0),
    output_field=IntegerField(),
)


def _waiting() -> QuerySet[ApprovalRequest]:
    """Pending requests of runs that can still use an answer (an aborted or timed-out run cannot)."""
    return ApprovalRequest.objects.filter(status=ApprovalRequest.PENDING).exclude(run__status__in=sm.TERMINAL)


def pending_count() -> int:
    """How many requests wait for a decision (the badge)."""
    return _waiting().count()


def pending_list(*, limit: int | None = None) -> QuerySet[ApprovalRequest]:
    """Pending requests, highest risk first, then the soonest to expire."""
    qs = (
        _waiting()
        .select_related("run", "run__graph")
        .annotate(risk_rank=_RISK_ORDER)
        .order_by("-risk_rank", "expires_at", "id")
    )
    return qs[:limit] if limit is not None else qs


def decided_list(*, limit: int = 100) -> QuerySet[ApprovalRequest]:
    """The history: decided, expired and auto-approved requests, newest decision first."""
    return (
        ApprovalRequest.objects.exclude(status=ApprovalRequest.PENDING)
        .select_related("run", "decided_by")
        .order_by("-decided_at", "-id")[:limit]
    )


def approval_get(*, pk: int) -> ApprovalRequest:
    return ApprovalRequest.objects.select_related("run", "run__graph", "decided_by", "activity").get(pk=pk)
