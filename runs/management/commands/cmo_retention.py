"""``python manage.py cmo_retention [--dry-run]``: apply the retention policy once."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from runs.retention import retention_apply


class Command(BaseCommand):
    help = (
        "Delete finished runs older than CMO_RETENTION_DAYS (failed, timed-out and aborted ones after "
        "CMO_RETENTION_FAILED_DAYS) with their steps, activities, events, approvals and blobs. "
        "Pinned runs and parents of kept forks stay."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted; delete nothing")
        parser.add_argument("--days", type=int, default=None, help="override CMO_RETENTION_DAYS (0 keeps forever)")
        parser.add_argument(
            "--failed-days", type=int, default=None, help="override CMO_RETENTION_FAILED_DAYS (0 keeps forever)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days = settings.CMO_RETENTION_DAYS if options["days"] is None else options["days"]
        failed_days = settings.CMO_RETENTION_FAILED_DAYS if options["failed_days"] is None else options["failed_days"]
        if days < 0 or failed_days < 0:
            raise CommandError("--days and --failed-days must be 0 (keep forever) or a positive number of days")
        if not days and not failed_days:
            self.stdout.write(
                "retention is off (CMO_RETENTION_DAYS and CMO_RETENTION_FAILED_DAYS are 0); nothing to do"
            )
            return
        counts = retention_apply(
            now=timezone.now(), keep_days=days, keep_failed_days=failed_days, dry_run=options["dry_run"]
        )
        verb = "would delete" if options["dry_run"] else "deleted"
        self.stdout.write(
            f"{verb} {counts['runs']} runs, {counts['steps']} steps, {counts['activities']} activities, "
            f"{counts['events']} events, {counts['approvals']} approvals, {counts['blobs']} blobs"
        )
