"""The demo's incident-research graph: three specialists at once, a limited dynamic fan-out, a child run, a timer."""

from __future__ import annotations

import pytest

from runs.demo_research import DEMO_RESEARCH_INPUTS, DEMO_RESEARCH_SEEDS
from runs.models import Run, Timer
from runs.services.runs import run_start
from runs.specialists.registry import specialist_sync_inprocess
from tests.helpers import drain

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_research_runs_show_every_shape_and_the_second_waits_on_its_timer() -> None:
    specialist_sync_inprocess()
    runs = [
        run_start(graph_name="incident-research", data={**data, "recheck_seconds": 0} if i == 0 else data, seed=seed)
        for i, (data, seed) in enumerate(zip(DEMO_RESEARCH_INPUTS, DEMO_RESEARCH_SEEDS, strict=True))
    ]
    drain()
    done, sleeping = (Run.objects.get(pk=r.pk) for r in runs)
    assert done.status == "COMPLETED", done.error
    assert [o["from"] for o in done.state["opinions"]] == ["metrics-analyst", "log-analyst", "change-analyst"]
    assert done.state["healing"]["status"] == "COMPLETED" and done.state["healthy"] is True
    scans = Run.objects.filter(spawned_by=done, kind="branch", spawn_step=1)
    assert done.state["lines_scanned"] == sum(s.state["lines_scanned"] for s in scans)
    assert (sleeping.status, sleeping.node) == ("WAITING", "wait_recheck")
    assert Run.objects.filter(spawned_by=sleeping, kind="branch", spawn_step=1).count() == 5
    assert Timer.objects.get(run=sleeping).fired_at is None
