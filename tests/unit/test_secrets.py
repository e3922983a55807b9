"""ctx.secret: a node uses a secret from the worker's environment; no checkpoint, record or log holds it."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core import serializers

from replay.services import ReplayError, run_fork
from runs.engine import END, graph, node
from runs.engine import secrets as engine_secrets
from runs.engine import statemachine as sm
from runs.engine.redaction import redact_text
from runs.engine.secrets import SecretMissing
from runs.models import Activity, Run, RunEvent, Step
from runs.services.runs import InvalidInput, run_start
from tests.fixtures.counting_server import CountingServer
from tests.helpers import start_and_execute
from tests.unit.dashboard_fixtures import client_for

pytestmark = pytest.mark.django_db(transaction=True)

PAYMENTS_KEY = "sk-live-4Hq8Zt2Mv7Rb"
log = logging.getLogger("tests.secrets_node")


@pytest.fixture(autouse=True)
def configured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Secrets as an operator would give them: one in the environment, one in a secrets directory."""
    (tmp_path / "webhook-token").write_text("whk-9Lp3Xs6Dn1Qc\n")
    monkeypatch.setenv("CMO_SECRET_PAYMENTS", PAYMENTS_KEY)
    monkeypatch.setenv("CMO_SECRETS_DIR", str(tmp_path))
    engine_secrets.reload()
    yield
    monkeypatch.delenv("CMO_SECRET_PAYMENTS")
    monkeypatch.delenv("CMO_SECRETS_DIR")
    engine_secrets.reload()


@node("sec_charge")
def sec_charge(state: dict[str, Any], ctx: Any) -> Any:
    key = ctx.secret("payments")
    log.info("charging with %s", key)
    resp = ctx.activities.http("POST", f"{state['url']}/charge", headers={"X-Client": key}, json={"amount": 5})
    return ctx.result({**state, "status": resp["status"], "hook": len(ctx.secret("WEBHOOK_TOKEN"))})


@node("sec_keep")
def sec_keep(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "cached": {"headers": [f"Bearer {ctx.secret('payments')}"]}})


@node("sec_missing")
def sec_missing(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "n": len(ctx.secret("not_configured"))})


graph("sec-charge", entry="sec_charge", edges=[("sec_charge", END)])
graph("sec-keep", entry="sec_keep", edges=[("sec_keep", END)])
graph("sec-missing", entry="sec_missing", edges=[("sec_missing", END)])


def _database_dump() -> str:
    rows = [Run, Step, Activity, RunEvent]
    return serializers.serialize("json", [obj for model in rows for obj in model.objects.all()])


def test_a_node_uses_a_secret_that_no_record_log_or_page_holds(console_log: io.StringIO) -> None:
    with CountingServer(echo_headers=True) as server:
        run = start_and_execute("sec-charge", {"url": server.url})
        sent = server.last("/charge")
    assert run.status == sm.COMPLETED, run.error
    assert sent.headers["X-Client"] == PAYMENTS_KEY  # the real request carried it
    assert run.state["hook"] == len("whk-9Lp3Xs6Dn1Qc")  # the directory's file, without its newline

    # Masked by value, under a header name that does not look like a secret.
    activity = Activity.objects.get(run=run)
    assert activity.request["headers"]["X-Client"] == "[redacted]"
    assert PAYMENTS_KEY not in _database_dump()
    output = console_log.getvalue()
    assert PAYMENTS_KEY not in output and "charging with [redacted]" in output
    html = client_for("viewer").get(f"/runs/{run.trace_id}/").content.decode()
    assert PAYMENTS_KEY not in html


def test_a_step_that_keeps_a_secret_in_its_state_fails_and_stores_nothing_of_it() -> None:
    run = start_and_execute("sec-keep", {"order": 7})
    assert run.status == sm.FAILED
    assert run.error == (
        "the state node 'sec_keep' returned holds the value of secret 'payments' at $.cached.headers[0]; "
        "secrets are never stored in checkpoints: call ctx.secret('payments') where the value is needed "
        "instead of keeping it"
    )
    step = Step.objects.get(run=run)
    assert step.attempt == 1  # not retried: the code has to change
    assert run.state == {"order": 7}
    assert PAYMENTS_KEY not in _database_dump()


def test_a_missing_secret_fails_the_step_saying_how_to_provide_it() -> None:
    run = start_and_execute("sec-missing", {})
    assert run.status == sm.FAILED
    assert run.error.startswith(
        "node 'sec_missing' asked for a secret 'not_configured' that is not set on this worker: "
        "set CMO_SECRET_NOT_CONFIGURED"
    )
    assert "or put a file 'not_configured' in CMO_SECRETS_DIR" in run.error


def test_a_run_input_holding_a_secret_is_refused_before_anything_is_written() -> None:
    with pytest.raises(InvalidInput) as caught:
        run_start(graph_name="sec-charge", data={"url": "http://x", "extra": {"key_copy": PAYMENTS_KEY}})
    assert caught.value.errors == [
        {
            "path": "$",
            "message": "the run input holds the value of secret 'payments' at $.extra.key_copy; secrets are "
            "never stored in checkpoints: call ctx.secret('payments') where the value is needed instead of keeping it",
        }
    ]
    assert not Run.objects.exists()


def test_the_api_answers_a_secret_in_the_input_with_a_422() -> None:
    client = client_for("operator")
    response = client.post(
        "/api/runs",
        data=json.dumps({"graph": "sec-charge", "input": {"url": "http://x", "note": f"use {PAYMENTS_KEY}"}}),
        content_type="application/json",
    )
    assert response.status_code == 422, response.content
    assert response.json()["code"] == "invalid_input"
    assert "secret 'payments' at $.note" in response.content.decode()
    assert PAYMENTS_KEY not in response.content.decode()
    assert not Run.objects.exists()


def test_a_fork_state_holding_a_secret_is_refused() -> None:
    with CountingServer() as server:
        run = start_and_execute("sec-charge", {"url": server.url})
    with pytest.raises(ReplayError, match=r"the forked state holds the value of secret 'payments' at \$.url"):
        run_fork(run=run, step=0, state={"url": f"http://{PAYMENTS_KEY}@x"})


def test_an_answer_whose_error_quotes_a_credential_is_stored_masked() -> None:
    from runs.services.signals import activity_answer
    from tests.helpers import execute

    run = run_start(graph_name="t-signal", data={"target": 1}, seed=1)
    execute(run)
    pending = Activity.objects.get(run=run, type="signal")
    activity_answer(activity=pending, error=f"401 from upstream: key {PAYMENTS_KEY} refused (Bearer abcdef123456)")
    pending.refresh_from_db()
    assert pending.error == "401 from upstream: key [redacted] refused (Bearer [redacted])"
    dump = _database_dump()
    assert PAYMENTS_KEY not in dump and "abcdef123456" not in dump


def test_short_values_are_served_but_not_scanned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CMO_SECRET_PIN", "1234")
    engine_secrets.reload()
    assert engine_secrets.secret_get("PIN") == "1234"
    assert redact_text("order 1234 shipped") == "order 1234 shipped"
    assert redact_text(f"k={PAYMENTS_KEY}!") == "k=[redacted]!"
    assert engine_secrets.secret_names() == ["payments", "pin", "webhook_token"]


def test_an_unreadable_secret_file_is_named_when_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    monkeypatch.setenv("CMO_SECRETS_DIR", str(tmp_path))
    engine_secrets.reload()  # does not raise: redaction of every log line depends on it
    assert redact_text("nothing to see") == "nothing to see"
    with pytest.raises(SecretMissing, match=r"its file in CMO_SECRETS_DIR could not be read \(UnicodeDecodeError"):
        engine_secrets.secret_get("binary")


@pytest.mark.parametrize("name", ["", "../etc/passwd", "a b", 7])
def test_a_bad_secret_name_is_a_clear_error(name: Any) -> None:
    with pytest.raises(SecretMissing, match="is not a secret name"):
        engine_secrets.secret_get(name)
