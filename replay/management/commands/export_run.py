"""``python manage.py export_run TRACE_ID [--out FILE] [--spawned]``: a run as a trace bundle (the backup format)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from replay.bundles import bundle_export
from runs.models import Run


class Command(BaseCommand):
    help = "Write a run to one JSON trace bundle (graph version, steps, activities, events, artifacts)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("trace_id", help="the run's trace id")
        parser.add_argument("--out", default=None, help="file to write (default: standard output)")
        parser.add_argument(
            "--spawned", action="store_true", help="include its branches and child runs (and theirs)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        run = Run.objects.select_related("graph", "parent").filter(trace_id=options["trace_id"]).first()
        if run is None:
            raise CommandError(f"no run with trace id {options['trace_id']!r}")
        text = json.dumps(bundle_export(run=run, spawned=options["spawned"]), sort_keys=True, indent=1)
        if options["out"]:
            Path(options["out"]).write_text(text)
            self.stdout.write(f"wrote {options['out']}")
        else:
            self.stdout.write(text)
