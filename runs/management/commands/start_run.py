"""``python manage.py start_run GRAPH [--version N] [--input JSON] [--wait] [--json] [--user NAME]``."""

from __future__ import annotations

import json
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from cmo_site.shared.permissions import primary_role
from runs.models import Graph, Run
from runs.services.graphs import GraphNotRunnable
from runs.services.runs import InvalidInput, run_start


class Command(BaseCommand):
    help = "Start a run of GRAPH and print its trace id (with --wait, its final status and state too)."

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> Any:
        # Our --version is the graph's; it replaces Django's --version flag here.
        return super().create_parser(prog_name, subcommand, conflict_handler="resolve", **kwargs)

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("graph", help="graph name")
        parser.add_argument("--version", type=int, default=None, help="graph version (default: latest)")
        parser.add_argument("--input", default="{}", help="run input as JSON")
        parser.add_argument("--seed", type=int, default=None, help="seed for ctx.activities.rand")
        parser.add_argument("--wait", action="store_true", help="wait for the run to finish")
        parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait with --wait")
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument(
            "--user",
            default="",
            help="start as this user, with their strongest role (default: no user, the operator role)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            data = json.loads(options["input"])
        except json.JSONDecodeError as exc:
            raise CommandError(f"--input is not valid JSON: {exc}") from None
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"], is_active=True).first()
            if user is None:
                raise CommandError(f"no active user {options['user']!r}")
        try:
            run = run_start(
                graph_name=options["graph"],
                version=options["version"],
                data=data,
                seed=options["seed"],
                user=user,
                role=primary_role(user) if user else "operator",
            )
        except (Graph.DoesNotExist, GraphNotRunnable) as exc:
            raise CommandError(str(exc)) from None
        except InvalidInput as exc:
            raise CommandError(f"invalid input for graph {options['graph']!r}: {exc}") from None
        if options["wait"]:
            run = self.wait(run, options["timeout"])
        self.stdout.write(self.render(run, options["json"], options["wait"]))
        if options["wait"] and run.status != "COMPLETED":
            raise CommandError(f"run {run.trace_id} ended {run.status}: {run.error}")

    def wait(self, run: Run, timeout: float) -> Run:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run.refresh_from_db()
            if run.is_terminal:
                return run
            time.sleep(0.2)
        raise CommandError(f"run {run.trace_id} is still {run.status} after {timeout:g} s (is a worker running?)")

    @staticmethod
    def render(run: Run, as_json: bool, waited: bool) -> str:
        if as_json:
            out: dict[str, Any] = {"trace_id": run.trace_id, "status": run.status}
            if waited:
                out.update(state=run.state, error=run.error, steps=run.step_index)
            return json.dumps(out)
        if not waited:
            return run.trace_id
        return f"{run.trace_id}\nstatus: {run.status}\nstate: {json.dumps(run.state, sort_keys=True)}"
