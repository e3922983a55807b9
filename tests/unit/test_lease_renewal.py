"""Lease renewal reports a lease as lost only when another worker holds it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from runs.models import Run
from runs.services import leases
from runs.services.runs import run_start

pytestmark = pytest.mark.django_db


def test_renewal_extends_own_leases_and_reports_only_runs_taken_by_another_worker() -> None:
    soon = timezone.now() + dt.timedelta(seconds=2)
    mine, ended, stolen = (run_start(graph_name="t-count", data={"target": 1}) for _ in range(3))
    Run.objects.filter(pk=mine.pk).update(lease_owner="w1", lease_expires_at=soon, status="RUNNING")
    Run.objects.filter(pk=ended.pk).update(lease_owner="", lease_expires_at=None, status="COMPLETED")
    Run.objects.filter(pk=stolen.pk).update(lease_owner="w2", lease_expires_at=soon, status="RUNNING")

    lost = leases.leases_renew(owner="w1", run_ids=[mine.pk, ended.pk, stolen.pk], lease_seconds=30)

    assert lost == {stolen.pk}  # the run that just ended is not a lost lease
    mine.refresh_from_db()
    stolen.refresh_from_db()
    assert mine.lease_expires_at is not None and mine.lease_expires_at > timezone.now() + dt.timedelta(seconds=20)
    assert stolen.lease_expires_at == soon  # another worker's lease is not touched
