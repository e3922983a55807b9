"""``python manage.py replay --trace ID [--to N] [--compare ID2] [--verify] [--verbose] [--json]``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from replay.services import ReplayError, replay_to, run_compare, run_steps, run_verify
from runs.models import Run


def _short(value: Any, width: int = 60) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= width else text[: width - 1] + "…"


class Command(BaseCommand):
    help = "Show a run's steps, the state at a step, verify it by re-execution, or compare it with another run."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--trace", required=True, help="the run's trace id")
        parser.add_argument("--to", type=int, default=None, help="stop at step N and print the state there")
        parser.add_argument("--compare", default=None, metavar="ID2", help="compare with another run")
        parser.add_argument("--verify", action="store_true", help="re-execute every step against its records")
        parser.add_argument("--verbose", action="store_true", help="show activities and full diffs")
        parser.add_argument("--json", action="store_true", help="print the result as JSON")

    def handle(self, *args: Any, **options: Any) -> None:
        run = self._run(options["trace"])
        if options["verify"]:
            self.verify(run, options)
        elif options["compare"]:
            self.compare(run, self._run(options["compare"]), options)
        elif options["to"] is not None:
            try:
                result = replay_to(run=run, index=options["to"])
            except ReplayError as exc:
                raise CommandError(str(exc)) from None
            self._out(
                result,
                options,
                lambda r: (
                    f"step {r['index']} ({r['node']}, edge {r['edge']})\n"
                    + json.dumps(r["state"], indent=2, sort_keys=True)
                ),
            )
        else:
            self.table(run, options)

    def _run(self, trace_id: str) -> Run:
        run = Run.objects.select_related("graph").filter(trace_id=trace_id).first()
        if run is None:
            raise CommandError(f"no run with trace id {trace_id!r}")
        return run

    def _out(self, data: Any, options: dict[str, Any], text: Any) -> None:
        self.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) if options["json"] else text(data))

    def table(self, run: Run, options: dict[str, Any]) -> None:
        steps = run_steps(run=run)
        if options["json"]:
            self._out({"trace_id": run.trace_id, "status": run.status, "steps": steps}, options, str)
            return
        self.stdout.write(f"run {run.trace_id}  {run.graph.name} v{run.graph.version}  {run.status}")
        self.stdout.write(f"{'step':>4}  {'node':<16} {'edge':<10} {'state hash':<14} {'ms':>8}  activities")
        for s in steps:
            kinds = ",".join(a["type"] for a in s["activities"]) or "-"
            self.stdout.write(
                f"{s['index']:>4}  {s['node']:<16} {s['edge'] or '-'!s:<10} "
                f"{s['state_hash'][:12]:<14} {s['duration_ms']:>8.2f}  {kinds}"
            )
            if options["verbose"]:
                for a in s["activities"]:
                    self.stdout.write(
                        f"        #{a['seq']} {a['type']} {a['status']} {_short(a['request'])}"
                        f" -> {_short(a['response'] if not a['error'] else a['error'])}"
                    )
            if s["error"]:
                self.stdout.write(f"        error: {s['error']}")

    def verify(self, run: Run, options: dict[str, Any]) -> None:
        report = run_verify(run=run)
        if options["json"]:
            self._out(report.as_dict(), options, str)
        else:
            for check in report.steps:
                self.stdout.write(
                    f"{check.index:>4}  {check.node:<16} {check.status}" + (f"  ({check.cause})" if check.cause else "")
                )
            if report.ok:
                self.stdout.write(f"verified: all {len(report.steps)} steps match")
        if not report.ok:
            d = report.first_divergence
            assert d is not None
            raise CommandError(
                f"divergence at step {d.index} ({d.node}): {d.cause}: "
                f"{json.dumps(d.detail, sort_keys=True, default=str)}"
            )

    def compare(self, left: Run, right: Run, options: dict[str, Any]) -> None:
        report = run_compare(left=left, right=right)
        if options["json"]:
            self._out(report.as_dict(), options, str)
            return
        self.stdout.write(f"{left.trace_id} vs {right.trace_id}: {report.match_percent:.1f}% of steps match")
        d = report.first_divergence
        self.stdout.write(
            "no divergence"
            if d is None
            else f"first divergence: step {d.left if d.left is not None else '-'} / "
            f"{d.right if d.right is not None else '-'} ({d.node})"
        )
        for p in report.pairs:
            if not p.match:
                self.stdout.write(
                    f"  {p.left if p.left is not None else '-':>4} | "
                    f"{p.right if p.right is not None else '-':<4} {p.node}"
                )
                for change in p.diff if options["verbose"] else p.diff[:5]:
                    self.stdout.write(
                        f"       {change['path']}: {_short(change['before'])} -> {_short(change['after'])}"
                    )
