"""Retention: delete old finished runs with everything recorded for them.

The policy (``CMO_RETENTION_DAYS``, ``CMO_RETENTION_FAILED_DAYS``; 0 keeps forever):

- only finished runs go: COMPLETED ones ``keep_days`` after they finished,
  FAILED, TIMED_OUT and ABORTED ones after ``keep_failed_days`` (kept longer
  so there is time to look into them). PENDING, RUNNING and WAITING runs are
  never touched, whatever their age;
- a pinned run is kept, and so is every run a kept fork descends from: a
  fork's history (replay, verify, export) includes its parent's steps up to
  the fork point, so a parent goes only together with all of its forks;
- a run goes with its steps, activities, events and the rows other apps keep for it
  (``register_dependent``: approvals registers its requests), in one
  transaction per batch, and then with the blobs its activities referenced in
  storage that no remaining activity references (blobs are content-addressed
  and shared between runs). Artifacts written by ``write_artifact`` are named
  by the node, not owned by a run, and are left alone.

Backups: ``export_run`` writes a run as a trace bundle (JSON, blobs inlined)
that ``import_run`` loads elsewhere; export what must outlive the policy
before it runs, or pin it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Model, Q
from django.db.models.functions import Coalesce

from runs.engine import statemachine as sm
from runs.models import Activity, Run, RunEvent, Step
from runs.services.blobs import BLOB_KEY, is_blob_digest, is_blob_ref

log = logging.getLogger(__name__)
FAILED_STATUSES = (sm.FAILED, sm.TIMED_OUT, sm.ABORTED)
BATCH = 200


@dataclass(frozen=True)
class Dependent:
    """Rows another app keeps for a run (``model.<field>`` points at it): deleted with it, counted as ``key``."""

    key: str
    model: type[Model]
    field: str = "run"


# Filled by the apps that keep rows of runs (approvals registers its requests from AppConfig.ready()).
DEPENDENTS: list[Dependent] = []


def register_dependent(dependent: Dependent) -> None:
    if all(d.key != dependent.key for d in DEPENDENTS):
        DEPENDENTS.append(dependent)


def counts_keys() -> tuple[str, ...]:
    return ("runs", "steps", "activities", "events", *(d.key for d in DEPENDENTS), "blobs")


def retention_candidates(*, now: dt.datetime, keep_days: int, keep_failed_days: int) -> list[int]:
    """Ids of the runs the policy deletes at ``now`` (see the module docstring), oldest first."""
    expired = Q(pk__in=[])
    if keep_days > 0:
        expired |= Q(status=sm.COMPLETED, ended__lt=now - dt.timedelta(days=keep_days))
    if keep_failed_days > 0:
        expired |= Q(status__in=FAILED_STATUSES, ended__lt=now - dt.timedelta(days=keep_failed_days))
    runs = Run.objects.annotate(ended=Coalesce("finished_at", "updated_at")).filter(expired, pinned=False)
    doomed = set(runs.values_list("pk", flat=True))
    # A parent stays while any fork of it stays, and a run while any run it spawned (a child, a branch)
    # stays, transitively.
    while doomed:
        kept_children_parents = set(
            Run.objects.filter(parent_id__in=doomed).exclude(pk__in=doomed).values_list("parent_id", flat=True)
        ) | set(
            Run.objects.filter(spawned_by_id__in=doomed).exclude(pk__in=doomed).values_list("spawned_by_id", flat=True)
        )
        if not kept_children_parents:
            break
        doomed -= kept_children_parents
    return sorted(doomed)


def _blob_digests(run_ids: Iterable[int]) -> set[str]:
    digests = set()
    for response in Activity.objects.filter(
        run_id__in=list(run_ids), **{f"response__{BLOB_KEY}__isnull": False}
    ).values_list("response", flat=True):
        digest = response.get(BLOB_KEY) if is_blob_ref(response) else None  # type: ignore[union-attr]
        if is_blob_digest(digest):  # never a path of another shape
            digests.add(str(digest))
    return digests


def _count(run_ids: list[int]) -> dict[str, int]:
    return {
        "runs": len(run_ids),
        "steps": Step.objects.filter(run_id__in=run_ids).count(),
        "activities": Activity.objects.filter(run_id__in=run_ids).count(),
        "events": RunEvent.objects.filter(run_id__in=run_ids).count(),
        **{d.key: d.model._default_manager.filter(**{f"{d.field}_id__in": run_ids}).count() for d in DEPENDENTS},
    }


def _delete_batch(run_ids: list[int]) -> dict[str, int]:
    """Delete the runs and their rows in one transaction; re-checks they are still finished and unpinned."""
    with transaction.atomic():
        still = list(
            Run.objects.select_for_update()
            .filter(pk__in=run_ids, status__in=sm.TERMINAL, pinned=False)
            .values_list("pk", flat=True)
        )
        counts = {
            **{d.key: d.model._default_manager.filter(**{f"{d.field}_id__in": still}).delete()[0] for d in DEPENDENTS},
            "activities": Activity.objects.filter(run_id__in=still).delete()[0],
            "steps": Step.objects.filter(run_id__in=still).delete()[0],
            "events": RunEvent.objects.filter(run_id__in=still).delete()[0],
        }
        Run.objects.filter(parent_id__in=still).exclude(pk__in=still).update(parent=None)
        counts["runs"] = Run.objects.filter(pk__in=still).delete()[0]
    return counts


def _delete_unreferenced_blobs(digests: set[str]) -> int:
    deleted = 0
    for digest in sorted(digests):
        if Activity.objects.filter(**{f"response__{BLOB_KEY}": digest}).exists():
            continue  # another run recorded the same payload
        path = f"blobs/{digest}.json"
        try:
            if default_storage.exists(path):
                default_storage.delete(path)
                deleted += 1
        except Exception:  # a storage hiccup leaves an orphan blob, which the next pass retries
            log.warning("could not delete blob %s", path, exc_info=True)
    return deleted


def retention_apply(
    *, now: dt.datetime, keep_days: int, keep_failed_days: int, dry_run: bool = False, batch: int = BATCH
) -> dict[str, Any]:
    """Apply the policy at ``now``; returns how many runs, steps, activities, events, approvals and blobs went.

    With ``dry_run`` nothing is deleted and the counts say what would be
    (blobs: those the runs reference that no other run does).
    """
    run_ids = retention_candidates(now=now, keep_days=keep_days, keep_failed_days=keep_failed_days)
    totals = dict.fromkeys(counts_keys(), 0)
    for start in range(0, len(run_ids), batch):
        chunk = run_ids[start : start + batch]
        digests = _blob_digests(chunk)
        if dry_run:
            counts = _count(chunk)
            shared = {
                d
                for d in digests
                if Activity.objects.filter(**{f"response__{BLOB_KEY}": d}).exclude(run_id__in=run_ids).exists()
            }
            counts["blobs"] = len(digests - shared)
        else:
            counts = _delete_batch(chunk)
            counts["blobs"] = _delete_unreferenced_blobs(digests)
        for key in totals:
            totals[key] += counts.get(key, 0)
    if totals["runs"] and not dry_run:
        log.info("retention deleted %s", totals)
    return {**totals, "dry_run": dry_run}
