"""``python manage.py schema_check``: validate the envelope schemas and the example envelopes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runs.engine import schemas


class Command(BaseCommand):
    help = "Validate the envelope JSON Schemas (runs/schemas) and the example envelopes; non-zero exit on a problem."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "files",
            nargs="*",
            help="more envelope files to validate, each named <Envelope>.<label>.json or given as Envelope=path",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        problems = schemas.check_all()
        for item in options["files"]:
            problems.extend(self.check_file(item))
        if problems:
            for line in problems:
                self.stderr.write(line)
            raise CommandError(f"{len(problems)} schema problem(s)")
        examples = len(list(schemas.EXAMPLES_DIR.glob("*.json"))) + len(options["files"])
        self.stdout.write(f"{len(schemas.schemas())} schemas and {examples} envelopes are valid")

    def check_file(self, item: str) -> list[str]:
        name, sep, path_text = item.partition("=")
        path = Path(path_text if sep else item)
        if not sep:
            name = path.name.split(".", 1)[0]
        try:
            document = json.loads(path.read_text())
            errors = schemas.envelope_errors(name, document)
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            return [f"{path}: {exc}"]
        return [f"{path}: {e['path']}: {e['message']}" for e in errors]
