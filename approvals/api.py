"""The JSON API for approval requests: list them, decide one (under /api/approvals)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from ninja import Field, Query, Router, Schema

from approvals.models import ApprovalRequest
from approvals.selectors import approval_get, decided_list, pending_list
from approvals.services import REASON_MAX_CHARS, approval_decide
from cmo_site.shared.api import StrictIn, caller, errors, requires
from cmo_site.shared.permissions import APPROVE, VIEW

router = Router(tags=["approvals"])

ApprovalId = Annotated[int, Field(ge=1, le=2**63 - 1)]


class ApprovalOut(Schema):
    id: int
    trace_id: str
    step: int
    seq: int
    node: str
    action: Any
    preview: str
    level: Literal["low", "medium", "high", "critical"]
    score: int
    findings: list[Any]
    status: Literal["pending", "approved", "rejected", "expired", "auto-approved"]
    created_at: dt.datetime
    expires_at: dt.datetime
    decided_by: str | None
    decided_at: dt.datetime | None
    reason: str


class ApprovalListQuery(Schema):
    status: Literal["pending", "decided"] = Field(
        "pending", description="pending: waiting, highest risk first; decided: the history, newest first"
    )
    limit: int = Field(100, ge=1, le=500)


class ApprovalListOut(Schema):
    approvals: list[ApprovalOut]


class DecideIn(StrictIn):
    approve: bool
    # The DecisionNotice envelope (runs/schemas/DecisionNotice.json) carries the reason and caps it at 5,000.
    reason: str = Field("", max_length=REASON_MAX_CHARS, description="required to reject")


def _approval_out(a: ApprovalRequest) -> dict[str, Any]:
    fields = ("id", "step", "seq", "node", "action", "preview", "level", "score", "findings", "status")
    return {
        **{f: getattr(a, f) for f in fields},
        "trace_id": a.run.trace_id,
        "created_at": a.created_at,
        "expires_at": a.expires_at,
        "decided_by": a.decided_by.get_username() if a.decided_by else None,
        "decided_at": a.decided_at,
        "reason": a.reason,
    }


@router.get(
    "/approvals",
    response={200: ApprovalListOut, **errors(403, 422)},
    auth=requires(VIEW),
    openapi_extra={
        "responses": {
            200: {
                "links": {
                    "DecideFirst": {
                        "operationId": "approvals_api_approval_decide_endpoint",
                        "parameters": {"approval_id": "$response.body#/approvals/0/id"},
                        "description": "decide the first request listed (a 409 once it is decided)",
                    }
                }
            }
        }
    },
)
def approval_list(request: HttpRequest, query: Query[ApprovalListQuery]) -> dict[str, Any]:
    rows = pending_list(limit=query.limit) if query.status == "pending" else decided_list(limit=query.limit)
    return {"approvals": [_approval_out(a) for a in rows]}


@router.post(
    "/approvals/{approval_id}/decide",
    response={200: ApprovalOut, **errors(400, 415, 403, 404, 409, 413, 422)},
    auth=requires(APPROVE),
)
def approval_decide_endpoint(request: HttpRequest, approval_id: ApprovalId, body: DecideIn) -> dict[str, Any]:
    principal = caller(request)
    decided = approval_decide(
        request=approval_get(pk=approval_id),
        user=principal.user,
        approve=body.approve,
        reason=body.reason,
        ip=request.META.get("REMOTE_ADDR"),
    )
    return _approval_out(approval_get(pk=decided.pk))
