"""What the scheduler does each sweep."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Q
from django.utils import timezone

from runs.engine import statemachine as sm
from runs.engine.errors import InvalidTransition
from runs.models import Run
from runs.services.dispatch import send_now
from runs.services.events import run_transition
from runs.services.leases import runnable

log = logging.getLogger(__name__)


def sweep(*, batch: int = 500) -> dict[str, int]:
    """Wake workers for runnable runs (new, orphaned, backoff over); time out overdue runs."""
    close_old_connections()
    now = timezone.now()
    timed_out = 0
    overdue = Run.objects.filter(status__in=[sm.PENDING, sm.WAITING, sm.RUNNING], deadline_at__lt=now).filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
    )
    for run_id in overdue.values_list("pk", flat=True)[:batch]:
        try:
            run_transition(
                run_id=run_id,
                target=sm.TIMED_OUT,
                message="run timeout reached",
                actor="scheduler",
                extra={"error": "run timeout reached"},
            )
            timed_out += 1
        except InvalidTransition:
            continue
    from approvals.services import approval_expire_due  # expiry answers the waiting activity and resumes the run

    expired = approval_expire_due()
    woken = 0
    for run_id in runnable(now).order_by("created_at", "id").values_list("pk", flat=True)[:batch]:
        send_now(settings.CMO_WORKER_CHANNEL, {"type": "run.dispatch", "run_id": run_id})
        woken += 1
    return {"woken": woken, "timed_out": timed_out, "approvals_expired": expired}
