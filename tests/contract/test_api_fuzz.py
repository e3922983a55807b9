"""schemathesis against the live API, in process (WSGI), authenticated with an admin token.

Bounded: a few examples per operation and a total time budget (examples past the
budget are not sent). Asserts what the contract promises for any input: no 5xx,
every status documented, JSON bodies, and every body matching its schema.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

import tests.graphs_approvals  # noqa: F401 - registers the ap_ nodes
from approvals.models import ApprovalRequest
from approvals.services import risk_rules_install_defaults
from cmo_site.api import openapi_document
from cmo_site.shared.tokens import api_token_create
from runs.services.runs import run_start
from runs.specialists.registry import specialist_register
from tests.helpers import execute, start_and_execute
from tests.unit.api_fixtures import user_with

MAX_EXAMPLES = 12
BUDGET_SECONDS = 60.0
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.\-]{0,99}$")
_clock: dict[str, float] = {}


@pytest.fixture(autouse=True)
def _requests_keep_the_test_connection(db: None) -> Iterator[None]:
    """Requests go through the real WSGI handler inside the test's transaction.

    As Django's test client does, they must not close the connection that holds
    that transaction (request_started/finished -> close_old_connections).
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@dataclass(frozen=True)
class Known:
    token: str
    trace_id: str
    approval_id: int


@pytest.fixture
def known(db: None) -> Known:
    """A token that may do everything; a finished run, a pending approval and a specialist for the cases to find."""
    run = start_and_execute("t-count", {"target": 2})
    risk_rules_install_defaults()
    waiting = run_start(graph_name="ap-require", data={"action": {"commands": ["rm -rf /srv"]}}, seed=1)
    execute(waiting)
    specialist_register(name="fuzz-spec", version="1", capabilities=["x"], transport="redis", address="cmo:spec:x")
    _, raw = api_token_create(user=user_with("fuzzer", superuser=True), role="admin", name="schemathesis")
    return Known(token=raw, trace_id=run.trace_id, approval_id=ApprovalRequest.objects.get(run=waiting).pk)


def aim_at_known_rows(case: Any, known: Known) -> None:
    """About half the well-formed ids become those of known rows, so the cases also find something.

    Malformed values stay as generated: they are the negative cases.
    """
    path = case.path_parameters or {}
    for params, key in ((path, "trace_id"), (case.query or {}, "other")):
        value = params.get(key)
        if isinstance(value, str) and TRACE_ID.match(value) and value[-1] in "02468ace":
            params[key] = known.trace_id
    name = path.get("name")
    if isinstance(name, str) and NAME.match(name) and len(name) % 2 == 0:
        path["name"] = "fuzz-spec" if case.path.startswith("/api/specialists") else "t-count"
    approval = path.get("approval_id")
    if isinstance(approval, int) and approval % 2 == 0:
        path["approval_id"] = known.approval_id


# The live document (the contract test keeps it equal to the committed one). Loaded at import:
# schemathesis' lazy fixture loader does not work with pytest 9.
schema = schemathesis.openapi.from_dict(openapi_document())
schema.app = get_wsgi_application()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_api_answers_any_input_within_its_contract(case: Any, known: Known) -> None:
    started = _clock.setdefault("start", time.monotonic())
    if time.monotonic() - started > BUDGET_SECONDS:
        return
    aim_at_known_rows(case, known)
    case.call_and_validate(headers={"Authorization": f"Bearer {known.token}"}, checks=CHECKS)
