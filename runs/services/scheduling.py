"""What the scheduler does each sweep."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Any

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


_retention_lock = threading.Lock()
_retention_last: float | None = None


def retention_tick(*, now: dt.datetime | None = None, force: bool = False) -> dict[str, Any] | None:
    """Apply the retention policy if it is on and its interval (CMO_RETENTION_INTERVAL_SECONDS,
    default hourly) has passed in this process; the counts, or None when it did not run.

    Separate from :func:`sweep` so a slow deletion never delays wake-ups; safe with
    several schedulers (deletion re-checks each run under a row lock).
    """
    global _retention_last
    if not (settings.CMO_RETENTION_DAYS or settings.CMO_RETENTION_FAILED_DAYS):
        return None
    with _retention_lock:
        recent = (
            _retention_last is not None and time.monotonic() - _retention_last < settings.CMO_RETENTION_INTERVAL_SECONDS
        )
        if recent and not force:
            return None
        _retention_last = time.monotonic()
    from runs.services.retention import retention_apply

    close_old_connections()
    return retention_apply(
        now=now or timezone.now(),
        keep_days=settings.CMO_RETENTION_DAYS,
        keep_failed_days=settings.CMO_RETENTION_FAILED_DAYS,
    )
