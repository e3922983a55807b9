"""A run whose worker keeps dying is not claimed forever (hole 16): counted, pushed back, then failed."""

from __future__ import annotations

import datetime as dt

import pytest
from django.test import override_settings
from django.utils import timezone

from runs.models import Run
from runs.services.leases import run_claim, run_claim_next
from runs.services.runs import run_start
from tests.helpers import execute

pytestmark = [pytest.mark.django_db(transaction=True)]


def _die_holding(run: Run) -> None:
    """What a kill -9 leaves: the lease still in the dead worker's name, expired."""
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - dt.timedelta(seconds=1))


def _claim(run: Run, owner: str, *, next_: bool) -> bool:
    if next_:
        return run_claim_next(owner=owner, lease_seconds=30) == run.pk
    return run_claim(run_id=run.pk, owner=owner, lease_seconds=30)


@pytest.mark.parametrize("next_", [False, True], ids=["hinted", "next"])
@override_settings(CMO_MAX_CRASHES=3, CMO_CRASH_BACKOFF_SECONDS=5.0)
def test_a_run_that_crashes_its_worker_is_pushed_back_then_failed(next_: bool) -> None:
    run = run_start(graph_name="t-count", data={"target": 2}, seed=1)
    assert _claim(run, "w1", next_=next_)
    _die_holding(run)
    assert _claim(run, "w2", next_=next_), "the first crash resumes at once"
    run.refresh_from_db()
    assert run.crash_count == 1 and run.lease_owner == "w2"

    _die_holding(run)
    assert not _claim(run, "w3", next_=next_), "the second crash waits"
    run.refresh_from_db()
    assert run.crash_count == 2 and run.lease_owner == "" and run.not_before > timezone.now()
    backoff = run.events.get(kind="crash_backoff")
    assert backoff.detail["delay_seconds"] == 5.0

    Run.objects.filter(pk=run.pk).update(not_before=timezone.now() - dt.timedelta(seconds=1))
    assert _claim(run, "w3", next_=next_), "after the wait it runs again (a released lease is no crash)"
    _die_holding(run)
    assert not _claim(run, "w4", next_=next_)
    run.refresh_from_db()
    assert run.status == "FAILED" and run.lease_owner == ""
    assert "died or stalled 3 times in a row while executing step 0 (node 't_count')" in run.error
    assert "CMO_MAX_CRASHES=3" in run.error
    assert not _claim(run, "w5", next_=next_), "a failed run is never claimed again"


def test_a_committed_step_ends_a_run_of_crashes() -> None:
    run = run_start(graph_name="t-count", data={"target": 3}, seed=1)
    assert run_claim(run_id=run.pk, owner="w1")
    _die_holding(run)
    assert run_claim(run_id=run.pk, owner="w2")
    assert Run.objects.get(pk=run.pk).crash_count == 1
    Run.objects.filter(pk=run.pk).update(lease_owner="", lease_expires_at=None)
    execute(run, max_steps=1)
    assert Run.objects.get(pk=run.pk).crash_count == 0


def test_a_graceful_release_is_not_a_crash() -> None:
    run = run_start(graph_name="t-count", data={"target": 2}, seed=1)
    for owner in ("w1", "w2", "w3", "w4"):
        assert run_claim(run_id=run.pk, owner=owner)
        Run.objects.filter(pk=run.pk).update(lease_owner="", lease_expires_at=None)  # released on SIGTERM
    assert Run.objects.get(pk=run.pk).crash_count == 0
