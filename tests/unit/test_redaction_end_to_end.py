"""A secret sent in an activity is not in the database, the logs or the run page.

The node holds its credentials in code (as it would read them from settings),
sends them in a header, a JSON field and a query parameter to a real local
server that echoes everything back, and logs them carelessly. The request goes
out with the secrets; nothing CMO keeps or shows has them.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from django.core import serializers

from approvals.models import ApprovalRequest
from runs.engine import END, graph, node
from runs.engine import statemachine as sm
from runs.models import Activity, Run, RunEvent, Step
from tests.fixtures.counting_server import CountingServer
from tests.helpers import start_and_execute
from tests.unit.dashboard_fixtures import client_for

pytestmark = pytest.mark.django_db(transaction=True)

HEADER_SECRET = "hdr-7Yq2Lx9Pw4Kd"
BODY_SECRET = "body-3Nf8Rt1Vz6Hb"
QUERY_SECRET = "qry-5Gm0Js2Wc8Ae"
SECRETS = (HEADER_SECRET, BODY_SECRET, QUERY_SECRET)
log = logging.getLogger("tests.secret_node")


@node("o_secret_call")
def o_secret_call(state: dict[str, Any], ctx: Any) -> Any:
    url = f"{state['url']}/charge?customer=42&api_key={QUERY_SECRET}"
    log.warning("charging via %s with Authorization: Bearer %s", url, HEADER_SECRET)
    resp = ctx.activities.http(
        "POST",
        url,
        headers={"Authorization": f"Bearer {HEADER_SECRET}", "Accept": "application/json"},
        json={"amount": 5, "api_key": BODY_SECRET},
    )
    log.info("charged", extra={"request_body": {"amount": 5, "api_key": BODY_SECRET}})
    return ctx.result({**state, "charged": resp["body"], "status": resp["status"]})


graph("o-secret", entry="o_secret_call", edges=[("o_secret_call", END)])


def test_secrets_sent_by_an_activity_are_not_stored_logged_or_shown(console_log: io.StringIO) -> None:
    with CountingServer(echo_headers=True) as server:
        run = start_and_execute("o-secret", {"url": server.url})
        sent = server.last("/charge")
    assert run.status == sm.COMPLETED, run.error

    # The real request carried every secret.
    assert sent.headers["Authorization"] == f"Bearer {HEADER_SECRET}"
    assert sent.body["api_key"] == BODY_SECRET and sent.query["api_key"] == [QUERY_SECRET]

    # The record keeps the request's shape, with the secrets masked (the echo in the response too).
    activity = Activity.objects.get(run=run)
    assert activity.request["headers"] == {"Authorization": "[redacted]", "Accept": "application/json"}
    assert activity.request["json"] == {"amount": 5, "api_key": "[redacted]"}
    assert activity.request["url"].endswith("/charge?customer=42&api_key=[redacted]")
    assert activity.response["body"]["headers"]["Authorization"] == "[redacted]"
    assert run.state["charged"]["body"] == {"amount": 5, "api_key": "[redacted]"}

    # Nowhere in the database.
    rows = [Run, Step, Activity, RunEvent, ApprovalRequest]
    dump = serializers.serialize("json", [obj for model in rows for obj in model.objects.all()])
    for secret in SECRETS:
        assert secret not in dump

    # Nowhere in the log output, where the node's own lines carry the run and step.
    output = console_log.getvalue()
    lines = [json.loads(line) for line in output.splitlines()]
    for secret in SECRETS:
        assert secret not in output
    charging = next(line for line in lines if line["message"].startswith("charging via"))
    assert charging["trace_id"] == run.trace_id and charging["run_id"] == run.pk
    assert charging["step"] == 0 and charging["node"] == "o_secret_call"
    assert "Bearer [redacted]" in charging["message"] and "api_key=[redacted]" in charging["message"]
    charged = next(line for line in lines if line["message"] == "charged")
    assert charged["request_body"] == {"amount": 5, "api_key": "[redacted]"}

    # Not on the run page, which does show the activity.
    page = client_for("viewer").get(f"/runs/{run.trace_id}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/charge?customer=42" in html and "[redacted]" in html
    for secret in SECRETS:
        assert secret not in html


def test_an_approval_preview_keeps_its_text_but_not_its_credentials() -> None:
    from approvals.services import approval_request_create
    from runs.services.runs import run_start

    run = run_start(graph_name="t-cycle", data={}, seed=1)
    request = approval_request_create(
        run_id=run.pk,
        step=0,
        seq=0,
        action={"commands": ["deploy"], "api_key": BODY_SECRET},
        preview=f"curl -H 'Authorization: Bearer {HEADER_SECRET}' https://ops.example.com/deploy?token={QUERY_SECRET}",
    )
    request.refresh_from_db()
    assert request.preview.startswith("curl -H 'Authorization: Bearer [redacted]' https://ops.example.com/deploy")
    assert request.action == {"commands": ["deploy"], "api_key": "[redacted]"}
    stored = serializers.serialize("json", ApprovalRequest.objects.all())
    for secret in SECRETS:
        assert secret not in stored
