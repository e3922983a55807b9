"""Retention deletes exactly the expired finished runs, with their rows and their own blobs, and nothing else."""

from __future__ import annotations

import datetime as dt
import io
import uuid

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

import tests.graphs_engine  # noqa: F401 - registers e-big (a response kept as a blob)
from approvals.models import ApprovalRequest
from runs import scheduler as scheduling
from runs.engine import statemachine as sm
from runs.models import Activity, Run, RunEvent, Step
from runs.retention import retention_apply
from runs.services.blobs import BLOB_KEY
from runs.services.runs import run_start
from tests.helpers import start_and_execute

pytestmark = pytest.mark.django_db(transaction=True)
NOW = timezone.now()


def _aged(run: Run, days: float, status: str | None = None, **fields: object) -> Run:
    """Make ``run`` look as if it finished ``days`` ago (with ``status`` if given)."""
    ended = NOW - dt.timedelta(days=days)
    Run.objects.filter(pk=run.pk).update(finished_at=ended, **({"status": status} if status else {}), **fields)
    run.refresh_from_db()
    return run


def _blob_run(nonce: str, days: float) -> tuple[Run, str]:
    run = start_and_execute("e-big", {"size": 70_000, "nonce": nonce})
    assert run.status == sm.COMPLETED, run.error
    digest = Activity.objects.get(run=run).response[BLOB_KEY]
    assert default_storage.exists(f"blobs/{digest}.json")
    return _aged(run, days), digest


@pytest.fixture
def world() -> dict[str, Run | str]:
    w: dict[str, Run | str] = {}
    w["old_done"], w["old_blob"] = _blob_run(uuid.uuid4().hex, days=40)
    shared = uuid.uuid4().hex
    w["old_shared"], w["shared_blob"] = _blob_run(shared, days=40)
    w["new_shared"], _ = _blob_run(shared, days=1)  # same payload, still kept: the blob must stay
    w["new_done"] = _aged(start_and_execute("t-cycle", {"target": 2}), days=5)
    w["failed_in_window"] = _aged(start_and_execute("t-not-json", {}), days=40)
    assert w["failed_in_window"].status == sm.FAILED
    w["failed_expired"] = _aged(start_and_execute("t-not-json", {}), days=100)
    w["aborted_expired"] = _aged(start_and_execute("t-cycle", {"target": 1}), days=100, status=sm.ABORTED)
    w["pinned"] = _aged(start_and_execute("t-cycle", {"target": 1}), days=400, pinned=True)
    for status in (sm.PENDING, sm.RUNNING, sm.WAITING):
        stuck = run_start(graph_name="t-cycle", data={}, seed=1)
        Run.objects.filter(pk=stuck.pk).update(status=status, created_at=NOW - dt.timedelta(days=500))
        w[f"old_{status.lower()}"] = _aged(stuck, days=500)
    # A parent with a fork that stays, and a parent whose only fork goes with it.
    w["parent_kept"] = _aged(start_and_execute("t-cycle", {"target": 2}), days=60)
    fork = start_and_execute("t-cycle", {"target": 1})
    w["fork_recent"] = _aged(fork, days=2, parent=w["parent_kept"], parent_step=0)
    w["parent_gone"] = _aged(start_and_execute("t-cycle", {"target": 2}), days=60)
    w["fork_old"] = _aged(start_and_execute("t-cycle", {"target": 1}), days=50, parent=w["parent_gone"], parent_step=0)
    ApprovalRequest.objects.create(
        run=w["old_done"], step=0, seq=5, level="high", status="approved", expires_at=NOW - dt.timedelta(days=39)
    )
    return w


GONE = ("old_done", "old_shared", "failed_expired", "aborted_expired", "parent_gone", "fork_old")


def test_retention_deletes_exactly_the_expired_runs_their_rows_and_their_own_blobs(
    world: dict[str, Run | str],
) -> None:
    gone = {world[k].pk for k in GONE}  # type: ignore[union-attr]
    kept = {r.pk for k, r in world.items() if isinstance(r, Run) and k not in GONE}
    expected = {
        "runs": len(gone),
        "steps": Step.objects.filter(run_id__in=gone).count(),
        "activities": Activity.objects.filter(run_id__in=gone).count(),
        "events": RunEvent.objects.filter(run_id__in=gone).count(),
        "approvals": 1,
        "blobs": 1,
    }
    kept_rows = {
        "steps": Step.objects.filter(run_id__in=kept).count(),
        "activities": Activity.objects.filter(run_id__in=kept).count(),
        "events": RunEvent.objects.filter(run_id__in=kept).count(),
    }

    dry = retention_apply(now=NOW, keep_days=30, keep_failed_days=90, dry_run=True)
    assert dry == {**expected, "dry_run": True}
    assert Run.objects.filter(pk__in=gone).count() == len(gone), "a dry run deletes nothing"
    assert default_storage.exists(f"blobs/{world['old_blob']}.json")

    counts = retention_apply(now=NOW, keep_days=30, keep_failed_days=90)

    assert counts == {**expected, "dry_run": False}
    assert set(Run.objects.values_list("pk", flat=True)) == kept
    for model in (Step, Activity, RunEvent, ApprovalRequest):
        assert not model.objects.filter(run_id__in=gone).exists()
    assert Step.objects.filter(run_id__in=kept).count() == kept_rows["steps"]
    assert Activity.objects.filter(run_id__in=kept).count() == kept_rows["activities"]
    assert RunEvent.objects.filter(run_id__in=kept).count() == kept_rows["events"]
    assert not default_storage.exists(f"blobs/{world['old_blob']}.json")
    assert default_storage.exists(f"blobs/{world['shared_blob']}.json"), "a blob another run uses stays"
    world["fork_recent"].refresh_from_db()  # type: ignore[union-attr]
    assert world["fork_recent"].parent_id == world["parent_kept"].pk  # type: ignore[union-attr]

    again = retention_apply(now=NOW, keep_days=30, keep_failed_days=90)
    assert again["runs"] == 0


def test_zero_days_keeps_that_kind_of_run_forever(world: dict[str, Run | str]) -> None:
    before = Run.objects.count()
    assert retention_apply(now=NOW, keep_days=0, keep_failed_days=0)["runs"] == 0
    only_failed = retention_apply(now=NOW, keep_days=0, keep_failed_days=90)
    assert only_failed["runs"] == 2  # failed_expired and aborted_expired; every completed run stays
    assert Run.objects.count() == before - 2


@override_settings(CMO_RETENTION_DAYS=30, CMO_RETENTION_FAILED_DAYS=90)
def test_the_command_and_the_scheduler_apply_the_configured_policy(world: dict[str, Run | str]) -> None:
    out = io.StringIO()
    call_command("cmo_retention", "--dry-run", stdout=out)
    assert out.getvalue().startswith("would delete 6 runs,")
    assert Run.objects.filter(pk=world["old_done"].pk).exists()  # type: ignore[union-attr]

    scheduling._retention_last = None
    first = scheduling.retention_tick()
    assert first is not None and first["runs"] == 6
    assert scheduling.retention_tick() is None, "at most once per interval"
    assert not Run.objects.filter(pk=world["old_done"].pk).exists()  # type: ignore[union-attr]

    out = io.StringIO()
    call_command("cmo_retention", stdout=out)
    assert out.getvalue().startswith("deleted 0 runs,")


@override_settings(CMO_RETENTION_DAYS=0, CMO_RETENTION_FAILED_DAYS=0)
def test_with_retention_off_nothing_is_deleted() -> None:
    out = io.StringIO()
    call_command("cmo_retention", stdout=out)
    assert "retention is off" in out.getvalue()
    assert scheduling.retention_tick(force=True) is None
