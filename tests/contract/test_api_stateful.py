"""Stateful schemathesis against the live API, in process (WSGI), authenticated with an admin token.

Where test_api_fuzz.py sends each operation random input on its own, this chains calls: a
schemathesis 4 state machine (``schema.as_state_machine()``) follows the OpenAPI links that the
routes declare (``openapi_extra`` in runs/api.py, replay/api.py and approvals/api.py; link inference
is off, so the document says what is chained):

    POST /api/runs -> the run, its steps, activities, events, abort, verify, export, fork (step 0)
    GET .../export -> POST /api/runs/import of that bundle -> the run, steps, verify, fork, export
    POST .../fork -> the fork, its steps, verify, export, compare with its parent
    POST /api/graphs -> GET that version, its versions, POST /api/runs on it
    POST /api/specialists -> heartbeat;  GET /api/approvals -> decide the first listed

Each response must pass the fuzz test's checks (no 5xx, every status documented, JSON bodies, every
body matching its schema) and what only a chain can check: a resource that a POST just created is
not a 404 (ensure_resource_availability); an import gives back the exported run; a fork points at
its parent and step; an export is of the run its link named; a completed run verifies.

Runs execute in the test process as soon as they are created (tests.helpers.execute) when that is
quick and harmless (t_count nodes, a handful of steps), so that export, import, fork and verify see
ended runs; the others stay PENDING. Before about half the imports of a bundle that checks out (by
the parity of the scenario's call count), the run it came from is deleted, as if it had been exported
elsewhere (201); the others are conflicts (409).

Bounded and reproducible: a fixed number of scenarios and steps, derandomized (a fixed seed), each
scenario rolled back (so the same choices get the same answers), no shrinking, and a time budget
past which the remaining steps are not sent.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ensure_resource_availability,
    response_schema_conformance,
    status_code_conformance,
)

import tests.graphs_approvals  # noqa: F401 - registers the ap_ nodes
from approvals.models import ApprovalRequest
from approvals.services import risk_rules_install_defaults
from cmo_site.api import openapi_document
from cmo_site.shared.tokens import api_token_create
from replay.bundles import BundleError, bundle_check
from runs.engine import statemachine as sm
from runs.models import Run
from runs.services.runs import run_start
from tests.helpers import execute
from tests.unit.api_fixtures import user_with

SCENARIOS = 60  # Hypothesis examples: each a fresh state machine, its writes rolled back at its end
STEPS = 20  # at most this many calls per scenario
BUDGET_SECONDS = 45.0
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
STATEFUL_CHECKS = [ensure_resource_availability]
SETTINGS = settings(
    max_examples=SCENARIOS,
    stateful_step_count=STEPS,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.generate],  # no shrinking: it replays scenarios for minutes; a failure is reported as found
    suppress_health_check=list(HealthCheck),
)
BOUNDED_NODES = {"t_count"}
MAX_EXECUTED_STEPS = 10
PUBLISHED = ("st-a", "st-b")  # the graph names the steered POST /api/graphs publish


@pytest.fixture(autouse=True)
def _requests_keep_the_test_connection(db: None) -> Iterator[None]:
    """Requests go through the real WSGI handler inside the test's transaction (see test_api_fuzz.py)."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def admin_token(db: None) -> str:
    """A token that may do everything, and a pending approval for GET /api/approvals -> decide to find."""
    risk_rules_install_defaults()
    waiting = run_start(graph_name="ap-require", data={"action": {"commands": ["rm -rf /srv"]}}, seed=1)
    execute(waiting)
    assert ApprovalRequest.objects.filter(run=waiting, status=ApprovalRequest.PENDING).exists()
    _, raw = api_token_create(user=user_with("stateful", superuser=True), role="admin", name="schemathesis-stateful")
    return raw


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def bounded(run: Run) -> bool:
    """Whether executing the run in the test process takes a handful of steps of known, harmless nodes."""
    nodes = {n.get("name") for n in run.graph.definition.get("nodes", []) if isinstance(n, dict)}
    if not nodes or not nodes <= BOUNDED_NODES:
        return False
    if run.max_steps - run.step_index <= MAX_EXECUTED_STEPS:
        return True
    state = run.state if run.state is not None else run.input
    if not isinstance(state, dict):
        return True  # t_count fails on its first step
    target, n = state.get("target", 3), state.get("n", 0)
    return not (_is_number(target) and _is_number(n)) or target - n <= MAX_EXECUTED_STEPS


class Steering:
    """Turns some generated values into ones that lead somewhere, deterministically (by counters, not ids).

    As test_api_fuzz.py aims ids at known rows: random graph names and definitions are nearly all
    404s and 422s, which the fuzz test covers; a chain needs a run that exists and has ended.
    """

    def __init__(self) -> None:
        self.runs = itertools.count()
        self.graphs = itertools.count()
        self.calls = itertools.count()
        self.forks = itertools.count()

    def before_call(self, case: Any) -> None:
        calls = next(self.calls)
        body = case.body
        if not isinstance(body, dict):
            return
        key = f"{case.method.upper()} {case.path}"
        if key == "POST /api/runs" and next(self.runs) % 4 != 3:
            if body.get("graph") not in PUBLISHED:  # a link from POST /api/graphs: keep its graph and version
                body.update(graph="t-count", input={"target": 2})
                body.pop("version", None)
        elif (
            key == "POST /api/graphs" and isinstance(body.get("definition"), dict) and (i := next(self.graphs)) % 4 != 3
        ):
            body["definition"] = {
                "name": PUBLISHED[(i // 2) % 2],
                "description": f"v{i // 4}",  # each version published twice in a row: 201, then 200
                "entry": "t_count",
                "nodes": [{"name": "t_count"}],
                "edges": [
                    {"from": "t_count", "to": "t_count", "label": "again"},
                    {"from": "t_count", "to": "__end__", "label": "done"},
                ],
                "max_steps": 4,
            }
        elif key == "POST /api/runs/import" and calls % 2 == 0:  # the scenario's calls so far: 201s and 409s
            try:
                bundle_check(body)
            except BundleError:
                return
            Run.objects.filter(trace_id=body["run"]["trace_id"], status__in=sm.TERMINAL).delete()
        elif case.path.endswith("/fork") and _is_number(body.get("step")):
            run = Run.objects.filter(trace_id=(case.path_parameters or {}).get("trace_id")).first()
            if run is not None and run.steps.exists():
                i = next(self.forks)
                body["step"] = int(body["step"]) % run.steps.count()
                if body.get("state") is not None and i % 2 == 0:
                    body["state"] = {"n": 0, "target": 2}
                if body.get("version") is not None and i % 4 != 3:
                    body.pop("version")  # a random number is no version of the graph: a 404


def execute_created_run(response: Any, case: Any) -> None:
    """A run that a call just created ends before the next call, when that is quick and harmless."""
    if response.status_code != 201 or not case.path.startswith("/api/runs") or case.path.endswith("/import"):
        return
    run = Run.objects.select_related("graph").filter(trace_id=response.json()["trace_id"]).first()
    if run is not None and run.status == sm.PENDING and bounded(run):
        execute(run)


def chain_invariants(response: Any, case: Any, parent_response: Any | None) -> None:
    """What a chain promises beyond each response's schema."""
    key = f"{case.method.upper()} {case.path}"
    request = f"{key} {case.path_parameters or ''} {str(case.body)[:300]}"
    if response.status_code >= 300:
        return
    body = response.json()
    if key == "POST /api/runs/import":
        bundle = case.body["run"]
        assert (body["trace_id"], body["status"]) == (bundle["trace_id"], bundle["status"]), request
    elif key == "POST /api/runs/{trace_id}/fork":
        assert body["parent_trace_id"] == case.path_parameters["trace_id"], request
        assert body["parent_step"] == case.body["step"], request
        assert body["status"] == sm.PENDING, request
    elif (
        key == "POST /api/runs/{trace_id}/verify"
        and Run.objects.filter(trace_id=body["trace_id"], status=sm.COMPLETED).exists()
    ):
        assert body["ok"], f"{request}: a completed run of deterministic nodes does not verify: {body}"
    elif key == "GET /api/runs/{trace_id}/export" and parent_response is not None:
        if parent_response.status_code == 201:  # POST /api/runs, a fork or an import: the run it named
            assert body["run"]["trace_id"] == parent_response.json()["trace_id"], request


# Only the declared links: what schemathesis infers changes between its versions, and adds transitions
# (GET /api/runs -> each run's endpoints) that the fuzz test already covers at random.
schema = schemathesis.openapi.from_dict(
    openapi_document(),
    config=SchemathesisConfig.from_dict({"phases": {"stateful": {"inference": {"algorithms": []}}}}),
)
schema.app = get_wsgi_application()
APIWorkflow: Any = schema.as_state_machine()


class Workflow(APIWorkflow):  # type: ignore[misc]
    """One scenario: a fresh machine, in a savepoint rolled back at its end.

    So every scenario starts from the same rows, and the same choices make the same calls get the same
    answers: Hypothesis requires that (FlakyStrategyDefinition otherwise), and a failure replays.
    """

    token: ClassVar[str] = ""
    deadline: ClassVar[float] = 0.0
    seen: ClassVar[Counter[str]] = Counter()
    skipped: ClassVar[int] = 0
    failed: ClassVar[bool] = False

    def setup(self) -> None:
        self.steering = Steering()
        self.scenario = transaction.atomic()
        self.scenario.__enter__()

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self.scenario.__exit__(None, None, None)

    def step(self, input: Any) -> Any:
        if time.monotonic() > self.deadline and not self.failed:
            type(self).skipped += 1
            return None  # past the budget: not sent, and nothing for later steps to follow
        return super().step(input)

    def _repr_step(self, rule: Any, data: Any, result: Any) -> str:
        # Hypothesis prints the failing scenario's steps by the names of the values each step added to
        # its bundles; a schemathesis step whose response fed no link added none, and its assertion
        # error would hide the failure behind a FlakyStrategyDefinition.
        try:
            return str(super()._repr_step(rule, data, result))
        except AssertionError:
            return f"state.{rule.function.__name__}({', '.join(f'{k}={v}' for k, v in data.items())})"

    def get_call_kwargs(self, case: Any) -> dict[str, Any]:
        return {"headers": {"Authorization": f"Bearer {self.token}"}}

    def before_call(self, case: Any) -> None:
        self.steering.before_call(case)

    def after_call(self, response: Any, case: Any) -> None:
        super().after_call(response, case)
        self.seen[f"{case.method.upper()} {case.path} {response.status_code}"] += 1
        execute_created_run(response, case)

    def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
        try:
            case.validate_response(
                response,
                checks=CHECKS,
                additional_checks=STATEFUL_CHECKS,
                transport_kwargs=kwargs or None,
                recorder=self.recorder,
            )
            parent = self.recorder.find_parent(case_id=case.id)
            chain_invariants(response, case, self.recorder.find_response(case_id=parent.id) if parent else None)
        except Exception:
            type(self).failed = True  # Hypothesis replays the failing scenario: past the budget too
            raise


def test_chains_of_calls_stay_within_the_contract(admin_token: str) -> None:
    Workflow.token = admin_token
    Workflow.deadline = time.monotonic() + BUDGET_SECONDS
    Workflow.seen = Counter()
    Workflow.skipped = 0
    Workflow.failed = False
    try:
        Workflow.run(settings=SETTINGS)
    except FlakyStrategyDefinition:
        # The scenarios past the budget send nothing, so the same choices meet other answers than before.
        if not Workflow.skipped:
            raise
    seen = Workflow.seen
    print("\n".join(f"{n:4} {k}" for k, n in sorted(seen.items())), f"\nskipped past the budget: {Workflow.skipped}")
    if not Workflow.skipped:  # the chains the links promise were reached
        for reached in (
            "POST /api/runs 201",
            "GET /api/runs/{trace_id}/export 200",
            "POST /api/runs/import 201",
            "POST /api/runs/import 409",
            "POST /api/runs/{trace_id}/fork 201",
            "GET /api/runs/{trace_id}/compare 200",
            "POST /api/runs/{trace_id}/verify 200",
            "POST /api/graphs 201",
            "POST /api/graphs 200",
            "POST /api/specialists/{name}/heartbeat 200",
            "POST /api/approvals/{approval_id}/decide 200",
        ):
            assert seen[reached], f"no {reached} in {sorted(seen)}"
