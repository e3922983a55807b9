"""``python manage.py import_run FILE``: read a trace bundle into this installation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cmo_site.shared.permissions import primary_role
from replay.bundles import BundleError, bundle_import
from runs.engine.json_input import JSONInputError, parse_json


class Command(BaseCommand):
    help = "Import a run from a trace bundle; a malformed or tampered bundle is refused and nothing is written."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("file", help="the bundle (JSON)")
        parser.add_argument(
            "--user",
            default="",
            help="import as this user: the run is theirs and its forks get no more than their role (default: nobody)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"], is_active=True).first()
            if user is None:
                raise CommandError(f"no active user {options['user']!r}")
        try:
            bundle = parse_json(Path(options["file"]).read_bytes(), what="the bundle")
        except OSError as exc:
            raise CommandError(f"{options['file']}: not readable: {exc}") from None
        except JSONInputError as exc:
            raise CommandError(f"{options['file']}: {exc.message}") from None
        try:
            run = bundle_import(bundle=bundle, user=user, role=primary_role(user) if user else "")
        except BundleError as exc:
            raise CommandError(f"{options['file']}: {exc}") from None
        self.stdout.write(f"imported run {run.trace_id} ({run.graph.name} v{run.graph.version}, {run.status})")
