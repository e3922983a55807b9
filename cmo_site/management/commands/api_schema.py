"""``python manage.py api_schema [--check]``: write (or check) the committed OpenAPI document."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from cmo_site.api import SCHEMA_FILE, openapi_document, openapi_text


class Command(BaseCommand):
    help = f"Write the API's OpenAPI document to {SCHEMA_FILE.name} (with --check: fail if it is out of date)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--check", action="store_true", help="do not write; exit non-zero if the committed document differs"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        document = openapi_document()
        if options["check"]:
            committed = json.loads(SCHEMA_FILE.read_text()) if SCHEMA_FILE.exists() else None
            if committed != document:
                raise CommandError(
                    f"{SCHEMA_FILE} is out of date with the API: run `python manage.py api_schema` and commit it"
                )
            self.stdout.write(f"{SCHEMA_FILE.name} matches the API")
            return
        SCHEMA_FILE.write_text(openapi_text(document))
        self.stdout.write(f"wrote {SCHEMA_FILE} ({len(document.get('paths', {}))} paths)")
