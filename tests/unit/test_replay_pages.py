"""The replay pages: verify badges, the compare page, fork, export and import, with roles and errors."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

import tests.e2e.graphs_e2e  # noqa: F401 - registers e2e-diverge
import tests.graphs_replay as graphs_replay
from replay.bundles import bundle_export
from runs.engine import node
from runs.engine.graph import NODES
from runs.models import Graph, Run, RunEvent
from runs.services.run_store import step_state
from tests.helpers import execute, start_and_execute
from tests.unit.dashboard_fixtures import client_for

pytestmark = pytest.mark.django_db(transaction=True)
FRAGMENT = {"HTTP_X_CMO_FRAGMENT": "verify"}


@pytest.fixture(autouse=True)
def knobs() -> Iterator[dict[str, Any]]:
    saved = dict(graphs_replay.REPLAY_KNOBS)
    yield graphs_replay.REPLAY_KNOBS
    graphs_replay.REPLAY_KNOBS.clear()
    graphs_replay.REPLAY_KNOBS.update(saved)


@pytest.fixture
def viewer() -> Client:
    return client_for("viewer")


@pytest.fixture
def operator() -> Client:
    return client_for("operator")


def pipeline(seed: int = 7) -> Run:
    run = start_and_execute("r-pipeline", {"topic": "disks", "rounds": 3}, seed=seed)
    assert run.status == "COMPLETED", run.error
    return run


def diverge(seed: int) -> Run:
    run = start_and_execute("e2e-diverge", {}, seed=seed)
    assert run.status == "COMPLETED", run.error
    return run


def statuses(html: str) -> list[str]:
    return re.findall(r'data-status="(\w+)"', html)


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/compare/"),
        ("get", "/runs/import/"),
        ("post", "/runs/import/"),
        ("post", "/runs/0123456789abcdef0123456789abcdef/verify/"),
        ("get", "/runs/0123456789abcdef0123456789abcdef/fork/"),
        ("post", "/runs/0123456789abcdef0123456789abcdef/fork/"),
        ("get", "/runs/0123456789abcdef0123456789abcdef/export/"),
    ],
)
def test_every_replay_page_needs_a_sign_in(method: str, url: str) -> None:
    response = getattr(Client(), method)(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=")


def test_a_viewer_may_verify_compare_and_export_but_gets_403_on_fork_and_import(viewer: Client) -> None:
    run = pipeline()
    page = viewer.get(f"/runs/{run.trace_id}/").content.decode()
    assert "Verify run" in page and "Export trace bundle" in page
    assert "Fork at step" not in page and "/fork/" not in page
    assert viewer.post(f"/runs/{run.trace_id}/verify/", **FRAGMENT).status_code == 200
    assert viewer.get(f"/compare/?left={run.trace_id}&right={run.trace_id}").status_code == 200
    assert viewer.get(f"/runs/{run.trace_id}/export/").status_code == 200
    assert viewer.get(f"/runs/{run.trace_id}/fork/?step=2").status_code == 403
    posted = viewer.post(f"/runs/{run.trace_id}/fork/", {"step": 2, "state": "{}", "version": run.graph.version})
    assert posted.status_code == 403
    assert viewer.get("/runs/import/").status_code == 403
    assert viewer.post("/runs/import/").status_code == 403
    assert Run.objects.count() == 1
    runs_list = viewer.get("/runs/").content.decode()
    assert 'href="/compare/"' in runs_list and 'href="/runs/import/"' not in runs_list


def test_an_operator_sees_the_fork_button_at_the_current_step_and_the_import_page(operator: Client) -> None:
    run = pipeline()
    page = operator.get(f"/runs/{run.trace_id}/?step=2").content.decode()
    assert f'href="/runs/{run.trace_id}/fork/?step=2"' in page and "Fork at step" in page
    assert operator.get("/runs/import/").status_code == 200
    assert 'href="/runs/import/"' in operator.get("/runs/").content.decode()


def test_verify_of_an_unchanged_run_gives_every_step_a_verified_badge(viewer: Client) -> None:
    run = pipeline()
    fragment = viewer.post(f"/runs/{run.trace_id}/verify/", **FRAGMENT).content.decode()
    assert statuses(fragment) == ["match"] * 6
    assert fragment.count(">verified</span>") == 7  # the summary and six steps
    assert "All 6 steps were re-executed" in fragment and "First divergence" not in fragment
    assert "<html" not in fragment
    posted = viewer.post(f"/runs/{run.trace_id}/verify/")  # the form without the script: POST-redirect-GET
    assert posted.status_code == 302 and posted["Location"] == f"/runs/{run.trace_id}/verify/"
    page = viewer.get(posted["Location"]).content.decode()
    assert "<html" in page and "All 6 steps were re-executed" in page


def test_verify_explains_a_different_activity_with_both_requests(viewer: Client, knobs: dict[str, Any]) -> None:
    run = pipeline()
    knobs["dice_high"] = 20
    fragment = viewer.post(f"/runs/{run.trace_id}/verify/", **FRAGMENT).content.decode()
    assert statuses(fragment) == ["match", "match", "mismatch", "unchecked", "unchecked", "unchecked"]
    assert "First divergence: step 2 · r_dice" in fragment
    assert "The node asked for a different activity" in fragment
    assert "&quot;high&quot;: 6" in fragment and "&quot;high&quot;: 20" in fragment
    assert "Recorded request (activity #1)" in fragment or "Recorded request (activity #0)" in fragment


def test_verify_explains_changed_code_with_both_source_hashes_and_graph_versions(
    viewer: Client, fresh_registry: None
) -> None:
    run = pipeline()
    recorded = run.graph.node_hashes["r_end"]
    NODES.unregister("r_end")

    @node("r_end")
    def r_end(state: dict[str, Any], ctx: Any) -> Any:  # a later deploy doubled the total
        return ctx.result({**state, "total": 2 * sum(state["rolls"])}, output={"total": 2 * sum(state["rolls"])})

    fragment = viewer.post(f"/runs/{run.trace_id}/verify/", **FRAGMENT).content.decode()
    assert statuses(fragment)[-1] == "mismatch"
    assert "The node&#x27;s code changed" in fragment
    assert recorded in fragment and NODES.get("r_end").source_hash in fragment
    assert f"v{run.graph.version}" in fragment
    assert 'id="divergence-diff"' in fragment and "$.total" in fragment


def test_verify_names_a_non_deterministic_node(viewer: Client, knobs: dict[str, Any]) -> None:
    knobs["unrecorded_random"] = True
    run = pipeline()
    fragment = viewer.post(f"/runs/{run.trace_id}/verify/", **FRAGMENT).content.decode()
    assert "The node is non-deterministic" in fragment and "Two re-executions disagree" in fragment
    assert 'id="reexecution-diff"' in fragment


FLIP = {"factor": 1}


def test_verify_shows_the_diff_when_a_node_produces_a_different_state(viewer: Client, fresh_registry: None) -> None:
    from runs.engine import END, graph

    @node("p_scale")
    def p_scale(state: dict[str, Any], ctx: Any) -> Any:  # same code; what it reads (FLIP) changes after the run
        return ctx.result({**state, "scaled": state["x"] * FLIP["factor"]})

    graph("p-scale", entry="p_scale", edges=[("p_scale", END)])
    run = start_and_execute("p-scale", {"x": 21})
    FLIP["factor"] = 2
    try:
        fragment = viewer.post(f"/runs/{run.trace_id}/verify/", **FRAGMENT).content.decode()
    finally:
        FLIP["factor"] = 1
    assert statuses(fragment) == ["mismatch"]
    assert "The node produced a different state" in fragment and "<code>state_changed</code>" in fragment
    diff = fragment[fragment.index('id="divergence-diff"') :]
    assert "Recorded</th>" in diff and "$.scaled" in diff and ">21</td>" in diff and ">42</td>" in diff


def test_verify_of_an_unknown_run_is_404(viewer: Client) -> None:
    assert viewer.post("/runs/0123456789abcdef0123456789abcdef/verify/").status_code == 404


def test_the_compare_page_of_two_runs_that_diverge_at_step_3(viewer: Client) -> None:
    left, right = diverge(seed=1), diverge(seed=2)
    page = viewer.get(f"/compare/?left={left.trace_id}&right={right.trace_id}").content.decode()
    assert 'id="match-percent">60%' in page
    assert "3 of 5 aligned steps have the same state" in page
    first = page[page.index('id="first-divergence"') :]
    assert "step 3</span>" in first[:400]
    assert page.count('class="pair-diverged') == 2  # steps 3 and 4 (the draw is carried on)
    # the selected step defaults to the first divergence, with the diff of the draw
    assert "Aligned step 3 · e2e_count_luck" in page and "$.luck" in page
    pairs = json.loads(re.search(r'<script id="compare-pairs" type="application/json">(.*?)</script>', page, re.S)[1])
    assert [p["match"] for p in pairs] == [True, True, True, False, False]
    assert pairs[3]["left_state"]["luck"] != pairs[3]["right_state"]["luck"]
    chosen = viewer.get(f"/compare/?left={left.trace_id}&right={right.trace_id}&step=1").content.decode()
    assert "Aligned step 1 · e2e_count_luck" in chosen and "No difference." in chosen


def test_the_compare_page_of_two_runs_with_the_same_seed_is_100_percent(viewer: Client) -> None:
    left, right = diverge(seed=5), diverge(seed=5)
    page = viewer.get(f"/compare/?left={left.trace_id}&right={right.trace_id}").content.decode()
    assert 'id="match-percent">100%' in page and "The runs match step for step." in page
    assert "pair-diverged" not in page


def test_the_compare_page_works_across_graph_versions_and_for_a_fork(viewer: Client) -> None:
    left = diverge(seed=1)
    newer = Graph.objects.get(name="e2e-diverge", version=left.graph.version)
    newer.pk, newer.version = None, left.graph.version + 1
    newer.save()
    from replay.services import run_fork

    child = run_fork(run=left, step=1, state={"n": 2, "edited": True}, version=newer.version)
    execute(child)
    page = viewer.get(f"/compare/?left={left.trace_id}&right={child.trace_id}").content.decode()
    assert f"e2e-diverge v{left.graph.version}" in page and f"e2e-diverge v{newer.version}" in page
    assert "forked from" in page
    assert "Aligned step 2 · e2e_count_luck" in page  # the fork inherits steps 0 and 1, then differs


def test_the_compare_page_reports_unknown_trace_ids(viewer: Client) -> None:
    run = diverge(seed=1)
    response = viewer.get(f"/compare/?left={run.trace_id}&right=nope")
    assert response.status_code == 404
    assert "Right: No run has the trace id &#x27;nope&#x27;." in response.content.decode()
    assert viewer.get("/compare/").status_code == 200


def test_the_run_page_offers_compare_with_other_runs_of_the_graph(viewer: Client) -> None:
    first, second = diverge(seed=1), diverge(seed=2)
    page = viewer.get(f"/runs/{second.trace_id}/").content.decode()
    assert "Compare with…" in page and f'<option value="{first.trace_id}"' in page
    assert f'<option value="{second.trace_id}"' not in page


def test_the_fork_form_is_prefilled_with_the_state_of_the_step(operator: Client) -> None:
    run = pipeline()
    page = operator.get(f"/runs/{run.trace_id}/fork/?step=3").content.decode()
    state = step_state(run_id=run.pk, index=3)
    assert "Fork after step 3" in page
    assert json.dumps(state["rolls"][0]) in page and "&quot;topic&quot;: &quot;disks&quot;" in page
    assert f'<option value="{run.graph.version}" selected>' in page
    assert "The new run continues at step 4 with node <code>r_dice</code>" in page
    last = operator.get(f"/runs/{run.trace_id}/fork/?step=5").content.decode()
    assert "Step 5 ended the run: there is nothing to continue after it." in last
    assert operator.get(f"/runs/{run.trace_id}/fork/?step=40").status_code == 404


def test_a_fork_with_edited_state_creates_a_run_and_leaves_the_original_untouched(operator: Client) -> None:
    run = pipeline()
    before = list(run.steps.values_list("index", "state_hash"))
    edited = {**step_state(run_id=run.pk, index=3), "rolls": [100, 100]}
    response = operator.post(
        f"/runs/{run.trace_id}/fork/", {"step": 3, "state": json.dumps(edited), "version": run.graph.version}
    )
    assert response.status_code == 302
    child = Run.objects.get(parent=run)
    assert response["Location"] == f"/runs/{child.trace_id}/"
    assert (child.parent_step, child.step_index, child.input["rolls"]) == (3, 4, [100, 100])
    assert RunEvent.objects.filter(run=child, actor="operator", kind="created").exists()
    assert list(run.steps.values_list("index", "state_hash")) == before
    execute(child)
    child_page = operator.get(f"/runs/{child.trace_id}/").content.decode()
    assert f'forked from <a class="mono" href="/runs/{run.trace_id}/?step=3">' in child_page
    assert "Step 5 of steps 4 to 5 (0 to 3 in the parent)" in child_page and 'min="4"' in child_page
    parent_page = operator.get(f"/runs/{run.trace_id}/").content.decode()
    assert f'href="/runs/{child.trace_id}/">{child.trace_id[:12]}</a> forked at step 3' in parent_page


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"step": 3, "state": "{not json", "version": None}, "The state is not valid JSON"),
        ({"step": 3, "state": '{"x": NaN}', "version": None}, "NaN is not a JSON number"),
        ({"step": 3, "state": '{"x": "a\\u0000b"}', "version": None}, "NUL character"),
        ({"step": 5, "state": "{}", "version": None}, "step 5 ended the run; there is nothing to continue"),
        ({"step": 9, "state": "{}", "version": None}, "has no step 9 to fork from"),
        ({"step": 3, "state": "{}", "version": 99}, "Select a valid choice"),
        ({"step": "", "state": "{}", "version": None}, "This field is required"),
    ],
)
def test_fork_errors_are_shown_inline_and_nothing_is_created(
    operator: Client, data: dict[str, Any], message: str
) -> None:
    run = pipeline()
    data = {**data, "version": data["version"] or run.graph.version}
    response = operator.post(f"/runs/{run.trace_id}/fork/", data)
    assert response.status_code == 400
    assert message in response.content.decode().replace("&#x27;", "'")
    assert 'role="alert"' in response.content.decode()
    assert Run.objects.count() == 1


def test_fork_onto_a_newer_version_but_not_an_older_one(operator: Client) -> None:
    run = pipeline()
    newer = Graph.objects.get(pk=run.graph.pk)
    newer.pk, newer.version = None, run.graph.version + 1
    newer.save()
    page = operator.get(f"/runs/{run.trace_id}/fork/?step=2").content.decode()
    assert f'<option value="{newer.version}">' in page
    response = operator.post(f"/runs/{run.trace_id}/fork/", {"step": 2, "state": "{}", "version": newer.version})
    assert response.status_code == 302
    assert Run.objects.get(parent=run).graph.version == newer.version


def test_export_downloads_the_bundle_and_import_brings_it_back(operator: Client) -> None:
    run = pipeline()
    response = operator.get(f"/runs/{run.trace_id}/export/")
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    assert response["Content-Disposition"] == f'attachment; filename="cmo-trace-{run.trace_id}.json"'
    bundle = json.loads(response.content)
    assert bundle["run"]["trace_id"] == run.trace_id and len(bundle["steps"]) == 6
    Run.objects.all().delete()
    upload = SimpleUploadedFile("bundle.json", response.content, content_type="application/json")
    imported = operator.post("/runs/import/", {"bundle": upload})
    assert imported.status_code == 302 and imported["Location"] == f"/runs/{run.trace_id}/"
    again = Run.objects.get(trace_id=run.trace_id)
    assert again.steps.count() == 6
    verified = operator.post(f"/runs/{run.trace_id}/verify/", **FRAGMENT).content.decode()
    assert statuses(verified) == ["match"] * 6
    upload = SimpleUploadedFile("bundle.json", response.content, content_type="application/json")
    conflict = operator.post("/runs/import/", {"bundle": upload})
    assert conflict.status_code == 409
    assert "already exists here" in conflict.content.decode()
    assert f'href="/runs/{run.trace_id}/"' in conflict.content.decode()


def test_a_tampered_or_malformed_bundle_is_refused_with_a_message(operator: Client) -> None:
    bundle = bundle_export(run=pipeline())
    Run.objects.all().delete()
    tampered = json.loads(json.dumps(bundle))
    tampered["steps"][2]["duration_ms"] += 1
    cases = [
        (json.dumps(tampered).encode(), "tampered bundle: its content does not match its sha256"),
        (json.dumps({k: v for k, v in bundle.items() if k != "steps"}).encode(), "&#x27;steps&#x27; is a required"),
        (b"{not json", "The file is not valid JSON"),
        (b"\xff\xfe", "The file is not UTF-8 text"),
    ]
    for content, message in cases:
        upload = SimpleUploadedFile("bundle.json", content, content_type="application/json")
        response = operator.post("/runs/import/", {"bundle": upload})
        assert response.status_code == 400
        assert message in response.content.decode(), message
        assert 'role="alert"' in response.content.decode()
        assert '<span class="mono">bundle.json</span>' in response.content.decode()
    assert "This field is required" in operator.post("/runs/import/", {}).content.decode()
    assert not Run.objects.exists()


def test_the_import_page_keeps_the_api_bundle_limit(operator: Client, settings: Any) -> None:
    bundle = json.dumps(bundle_export(run=pipeline())).encode()
    Run.objects.all().delete()
    settings.CMO_MAX_BUNDLE_BYTES = len(bundle) - 1
    upload = SimpleUploadedFile("bundle.json", bundle, content_type="application/json")
    response = operator.post("/runs/import/", {"bundle": upload})
    assert response.status_code == 400
    assert (
        f"The file is {len(bundle)} bytes; bundles of at most {len(bundle) - 1} bytes (CMO_MAX_BUNDLE_BYTES) "
        "are accepted." in response.content.decode()
    )
    assert not Run.objects.exists()
