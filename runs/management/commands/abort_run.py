"""``python manage.py abort_run TRACE_ID``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from runs.engine.errors import InvalidTransition
from runs.models import Run
from runs.services.runs import run_abort


class Command(BaseCommand):
    help = "Abort a run: at once if no worker holds it, otherwise between its steps or activities."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("trace_id", help="the run's trace id")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            run = Run.objects.get(trace_id=options["trace_id"])
        except Run.DoesNotExist:
            raise CommandError(f"no run with trace id {options['trace_id']!r}") from None
        try:
            run = run_abort(run=run, actor="cli")
        except InvalidTransition:
            raise CommandError(f"run {run.trace_id} has already ended ({run.status})") from None
        self.stdout.write(f"{run.trace_id} {run.status}" + (" (abort requested)" if run.abort_requested else ""))
