"""``python manage.py import_run FILE``: read a trace bundle into this installation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from replay.bundles import BundleError, bundle_import


class Command(BaseCommand):
    help = "Import a run from a trace bundle; a malformed or tampered bundle is refused and nothing is written."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="the bundle (JSON)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            bundle = json.loads(Path(options["file"]).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise CommandError(f"{options['file']}: not a readable JSON bundle: {exc}") from None
        try:
            run = bundle_import(bundle=bundle)
        except BundleError as exc:
            raise CommandError(f"{options['file']}: {exc}") from None
        self.stdout.write(f"imported run {run.trace_id} ({run.graph.name} v{run.graph.version}, {run.status})")
