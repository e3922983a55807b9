"""sync_graphs --json and abort_run from the command line."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from runs.models import Graph, Run
from runs.services.runs import run_start

pytestmark = pytest.mark.django_db


def test_a_json_definition_is_validated_and_stored(tmp_path: Path) -> None:
    good = tmp_path / "g.json"
    good.write_text(
        json.dumps(
            {
                "name": "json-count",
                "entry": "t_count",
                "nodes": [{"name": "t_count"}],
                "edges": [
                    {"from": "t_count", "to": "t_count", "label": "again"},
                    {"from": "t_count", "to": "__end__", "label": "done"},
                ],
            }
        )
    )
    out = io.StringIO()
    call_command("sync_graphs", "--json", str(good), stdout=out)
    assert "json-count v1 created" in out.getvalue()
    assert Graph.objects.get(name="json-count").origin == "json"


def test_an_invalid_json_definition_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "json-bad", "entry": "nope", "nodes": [{"name": "nope"}], "edges": []}))
    with pytest.raises(CommandError, match="unknown node 'nope'"):
        call_command("sync_graphs", "--json", str(bad), stdout=io.StringIO())
    assert not Graph.objects.filter(name="json-bad").exists()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(CommandError, match="the definition is not valid JSON"):
        call_command("sync_graphs", "--json", str(broken), stdout=io.StringIO())


def test_abort_run_ends_a_pending_run_and_refuses_an_ended_one() -> None:
    run = run_start(graph_name="t-count", data={"target": 1})
    out = io.StringIO()
    call_command("abort_run", run.trace_id, stdout=out)
    assert Run.objects.get(pk=run.pk).status == "ABORTED"
    with pytest.raises(CommandError, match="already ended"):
        call_command("abort_run", run.trace_id, stdout=io.StringIO())
    with pytest.raises(CommandError, match="no run with trace id"):
        call_command("abort_run", "missing", stdout=io.StringIO())
