"""``python manage.py sync_graphs [--json FILE ...]``: store code graphs, and graphs defined as JSON."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from runs.engine.errors import GraphValidationError
from runs.engine.json_input import JSONInputError, parse_json
from runs.services.graphs import GraphPublishRefused, graph_create_from_json, graph_sync_all


class Command(BaseCommand):
    help = (
        "Store the code-defined graphs (and JSON definitions); a changed definition or node source makes a new version."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--json", nargs="*", default=[], metavar="FILE", help="JSON graph definitions naming registered nodes"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        results = graph_sync_all()
        for path in options["json"]:
            try:
                definition = parse_json(Path(path).read_bytes(), what="the definition")
            except OSError as exc:
                raise CommandError(f"{path}: cannot read a JSON definition: {exc}") from None
            except JSONInputError as exc:
                raise CommandError(f"{path}: {exc.message}") from None
            try:
                results.append(graph_create_from_json(definition=definition))
            except (GraphValidationError, GraphPublishRefused) as exc:
                raise CommandError(f"{path}: {exc}") from None
        for graph, created in results:
            self.stdout.write(f"{graph.name} v{graph.version} {'created' if created else 'unchanged'}")
