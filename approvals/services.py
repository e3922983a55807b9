"""Approval requests and decisions.

A node's ``ctx.activities.request_approval(action, preview)`` reaches
:func:`approval_activity_effect` inside the activity boundary. Low risk is
auto-approved there and then (the request row is kept, status
``auto-approved``); otherwise the request waits and the activity suspends
the run. :func:`approval_decide` and :func:`approval_expire_due` answer the
pending activity through ``runs.services.signals.activity_answer``, which
resumes the run; the step then re-executes and every earlier activity
returns its recorded result.

The answer the node gets is a dict: ``{"approved": bool, "status", "by",
"reason", "level", "score", "request_id", "auto"}``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from approvals import risk
from approvals.models import ApprovalRequest, RiskRule
from cmo_site.shared import live
from cmo_site.shared.permissions import APPROVE, can
from runs.engine.errors import CMOError, Suspend
from runs.engine.hashing import normalize
from runs.engine.redaction import redact, redact_text
from runs.engine.schemas import validate_envelope
from runs.engine.stores import ACTIVITY_PENDING
from runs.models import Activity
from runs.services.events import run_event_add
from runs.services.signals import activity_answer
from runs.specialists.a2a import decision_notice_publish

ACTIVITY_TYPE = "request_approval"


class ApprovalError(CMOError):
    """Base of the approval errors a view turns into a 4xx answer."""


class ReasonRequired(ApprovalError, ValueError):
    status, code = 422, "reason_required"


# The DecisionNotice envelope's limit on "reason".
REASON_MAX_CHARS = 5000


class ReasonTooLong(ApprovalError, ValueError):
    status, code = 422, "reason_too_long"


class ApprovalNotPending(ApprovalError):
    """The request was already decided, expired or auto-approved."""

    status, code = 409, "not_pending"


class ApprovalNotReady(ApprovalError):
    """The run has not finished recording its request_approval activity yet (milliseconds); try again."""

    status, code = 409, "not_ready"


# -- reading the rules -----------------------------------------------------------------


def risk_rules() -> list[risk.Rule]:
    """The enabled rules from the database (admins edit them; a data migration seeds the defaults)."""
    return [row.as_rule() for row in RiskRule.objects.filter(enabled=True).order_by("category", "name")]


def risk_rules_install_defaults() -> int:
    """Store the default rules that do not exist by name (an admin's edits are kept); returns how many."""
    created = 0
    for rule in risk.DEFAULT_RULES:
        _, made = RiskRule.objects.get_or_create(
            name=rule.name,
            defaults={
                "category": rule.category,
                "pattern": rule.pattern,
                "threshold": rule.threshold,
                "level": rule.level,
                "weight": rule.weight,
                "why": rule.why,
            },
        )
        created += made
    return created


def approval_assess(*, action: dict[str, Any]) -> risk.Assessment:
    return risk.score(action, risk_rules())


def expiry_hours(level: str) -> float:
    return float(settings.CMO_APPROVAL_EXPIRY_HOURS[level])


def user_can_decide(user: AbstractBaseUser | AnonymousUser | None) -> bool:
    """Whether ``user`` may approve or reject (the APPROVE grant: approvers and admins, if active)."""
    return can(user, APPROVE)


def decision_payload(request: ApprovalRequest) -> dict[str, Any]:
    """What ``request_approval`` returns to the node for a decided request."""
    approved = request.status in (ApprovalRequest.APPROVED, ApprovalRequest.AUTO_APPROVED)
    return {
        "approved": approved,
        "auto": request.status == ApprovalRequest.AUTO_APPROVED,
        "status": request.status,
        "by": request.decided_by.get_username() if request.decided_by else "",
        "reason": request.reason,
        "level": request.level,
        "score": request.score,
        "request_id": request.pk,
    }


def decision_notice(request: ApprovalRequest) -> dict[str, Any]:
    """The DecisionNotice envelope of a decided request, validated against its schema."""
    by = request.decided_by.get_username() if request.decided_by else ""
    notice: dict[str, Any] = {
        "meta": {
            "schema_version": "1",
            "message_id": uuid.uuid4().hex,
            "trace_id": request.run.trace_id,
            "step": request.step,
            "seq": request.seq,
            "sent_at": (request.decided_at or timezone.now()).isoformat(),
            "sender": {"kind": "human", "name": by} if by else {"kind": "engine", "name": "cmo"},
            "recipient": {"kind": "node", "name": request.node or "node"},
        },
        "approval_id": request.pk,
        "decision": request.status,
        "level": request.level,
        "decided_at": (request.decided_at or timezone.now()).isoformat(),
        "reason": request.reason,
    }
    if by:
        notice["decided_by"] = by
    return dict(validate_envelope("DecisionNotice", notice))


def _announce_on_commit(request: ApprovalRequest) -> None:
    """Tell the inbox (group "approvals") after commit: {"type": "approval.changed", "request_id", ...}."""
    message = live.approval_message(
        request_id=request.pk, run_id=request.run_id, status=request.status, level=request.level
    )
    live.send_on_commit(live.APPROVALS_GROUP, message)


# -- creating requests --------------------------------------------------------------------


def approval_request_create(
    *, run_id: int, step: int, seq: int, action: dict[str, Any], preview: str = "", node: str = ""
) -> ApprovalRequest:
    """Assess ``action`` and store its request; low risk is auto-approved at once.

    Idempotent per (run, step, seq): an activity re-executed after a crash
    finds the request its first execution made. Secret-named fields of the
    action (and credentials in the preview) are redacted before anything is stored or scored.
    """
    clean, _, _ = normalize(redact(action), what="the approval action")
    assessment = risk.score(clean, risk_rules())
    now = timezone.now()
    auto = assessment.level == risk.LOW
    with transaction.atomic():
        request, created = ApprovalRequest.objects.get_or_create(
            run_id=run_id,
            step=step,
            seq=seq,
            defaults={
                "node": node,
                "action": clean,
                "preview": redact_text(preview),
                "level": assessment.level,
                "score": assessment.score,
                "findings": assessment.findings,
                "status": ApprovalRequest.AUTO_APPROVED if auto else ApprovalRequest.PENDING,
                "expires_at": now + dt.timedelta(hours=expiry_hours(assessment.level)),
                "decided_at": now if auto else None,
                "reason": "low risk: approved automatically" if auto else "",
            },
        )
        if created:
            run_event_add(
                run_id=run_id,
                kind="approval_auto" if auto else "approval_requested",
                step=step,
                actor="risk-engine" if auto else "",
                message=(
                    f"approval #{request.pk}: {assessment.level} risk (score {assessment.score}), "
                    + ("auto-approved" if auto else f"waiting until {request.expires_at:%Y-%m-%d %H:%M} UTC")
                ),
                detail={
                    "request_id": request.pk,
                    "level": assessment.level,
                    "score": assessment.score,
                    "findings": [f["rule"] for f in assessment.findings],
                },
            )
            _announce_on_commit(request)
    return request


def approval_activity_effect(
    *, run_id: int, step: int, seq: int, node: str, action: dict[str, Any], preview: str
) -> dict[str, Any]:
    """The effect behind ``ctx.activities.request_approval``: a decision, or Suspend until one is made."""
    request = approval_request_create(run_id=run_id, step=step, seq=seq, node=node, action=action, preview=preview)
    if request.status == ApprovalRequest.PENDING:
        raise Suspend(
            f"waiting for approval #{request.pk} ({request.level} risk) of step {step}, "
            f"expires {request.expires_at:%Y-%m-%d %H:%M} UTC"
        )
    return decision_payload(request)


# -- deciding ---------------------------------------------------------------------------------


def _answer(request: ApprovalRequest, *, actor: str) -> None:
    """Answer the request's pending activity (the run resumes). Caller holds the request's row lock."""
    activity = (
        Activity.objects.filter(run_id=request.run_id, step=request.step, seq=request.seq, type=ACTIVITY_TYPE)
        .only("pk", "run_id", "step", "seq", "type", "status")
        .first()
    )
    if activity is None or activity.status != ACTIVITY_PENDING:
        raise ApprovalNotReady(f"approval #{request.pk}: its activity is not recorded as pending yet; try again")
    activity_answer(activity=activity, response=decision_payload(request), actor=actor)
    ApprovalRequest.objects.filter(pk=request.pk).update(activity=activity)


def approval_decide(
    *,
    request: ApprovalRequest,
    user: AbstractBaseUser | AnonymousUser | None,
    approve: bool,
    reason: str = "",
    ip: str | None = None,
) -> ApprovalRequest:
    """Approve or reject a pending request and resume its run.

    Raises PermissionDenied unless the user is a superuser or in the
    "approver" or "admin" group; ReasonRequired to reject without a reason;
    ApprovalNotPending if it was already decided or expired. The decision is
    audited as a RunEvent (user, time, reason, IP) in the same transaction
    that records the answer.
    """
    if not user_can_decide(user):
        raise PermissionDenied("only approvers and admins can decide approval requests")
    assert user is not None
    reason = reason.strip()
    if not approve and not reason:
        raise ReasonRequired("a reason is required to reject")
    if len(reason) > REASON_MAX_CHARS:
        raise ReasonTooLong(f"a reason is at most {REASON_MAX_CHARS:,} characters (this one has {len(reason):,})")
    username = user.get_username()
    with transaction.atomic():
        locked = ApprovalRequest.objects.select_for_update().get(pk=request.pk)
        if locked.status != ApprovalRequest.PENDING:
            raise ApprovalNotPending(f"approval #{locked.pk} is {locked.status}, not pending")
        now = timezone.now()
        locked.status = ApprovalRequest.APPROVED if approve else ApprovalRequest.REJECTED
        locked.decided_by = user  # type: ignore[assignment]
        locked.decided_at = now
        locked.reason = reason
        locked.decided_ip = ip or None
        locked.save(update_fields=["status", "decided_by", "decided_at", "reason", "decided_ip"])
        run_event_add(
            run_id=locked.run_id,
            kind="approval_decided",
            step=locked.step,
            actor=username,
            message=f"approval #{locked.pk} {locked.status} by {username}" + (f": {reason}" if reason else ""),
            detail={
                "request_id": locked.pk,
                "decision": locked.status,
                "user": username,
                "reason": reason,
                "ip": ip or "",
                "at": now.isoformat(),
                "level": locked.level,
                "notice": (notice := decision_notice(locked)),
            },
        )
        _answer(locked, actor=username)
        _announce_on_commit(locked)
        decision_notice_publish(run=locked.run, notice=notice)
    locked.refresh_from_db()
    return locked


def approval_expire_due(*, now: dt.datetime | None = None, batch: int = 200) -> int:
    """Expire pending requests past their expiry and answer them as not approved; for the scheduler.

    Returns how many expired. A request whose activity is not recorded yet is left for the next sweep.
    """
    now = now or timezone.now()
    expired = 0
    due = ApprovalRequest.objects.filter(status=ApprovalRequest.PENDING, expires_at__lte=now)
    for pk in due.order_by("expires_at").values_list("pk", flat=True)[:batch]:
        try:
            with transaction.atomic():
                locked = ApprovalRequest.objects.select_for_update().get(pk=pk)
                if locked.status != ApprovalRequest.PENDING:
                    continue
                hours = expiry_hours(locked.level)
                locked.status = ApprovalRequest.EXPIRED
                locked.decided_at = now
                locked.reason = f"expired: no decision within {hours:g} h"
                locked.save(update_fields=["status", "decided_at", "reason"])
                run_event_add(
                    run_id=locked.run_id,
                    kind="approval_decided",
                    step=locked.step,
                    actor="scheduler",
                    message=f"approval #{locked.pk} expired after {hours:g} h without a decision",
                    detail={
                        "request_id": locked.pk,
                        "decision": "expired",
                        "reason": locked.reason,
                        "notice": (notice := decision_notice(locked)),
                    },
                )
                _answer(locked, actor="scheduler")
                _announce_on_commit(locked)
                decision_notice_publish(run=locked.run, notice=notice)
        except ApprovalNotReady:
            continue
        expired += 1
    return expired
