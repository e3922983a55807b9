"""Deliveries to POST /api/hooks/<name> through Django's test client: signatures, replays, refusals (each one
audit row and nothing else), the input mapping, idempotency keys, and with whose role the runs execute."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

from hooks import signing
from hooks.models import Hook, HookAudit, HookDelivery
from hooks.services import MAX_BODY_BYTES, HookConfig, hook_create, hook_update
from runs.engine.graph import graph
from runs.models import Run
from tests.unit.dashboard_fixtures import make_user

pytestmark = pytest.mark.django_db

ALERT_SCHEMA = {
    "type": "object",
    "required": ["service", "severity"],
    "properties": {"service": {"type": "string"}, "severity": {"enum": ["low", "high"]}},
}


@pytest.fixture
def alert_graph(fresh_registry: None) -> Iterator[str]:
    graph(
        "t-hook-alert",
        entry="t_count",
        edges=[("t_count", "t_count", "again"), ("t_count", "__end__", "done")],
        input_schema=ALERT_SCHEMA,
    )
    yield "t-hook-alert"


def make_hook(
    name: str = "alerts", *, owner: User | None = None, role: str = "operator", **config: Any
) -> tuple[Hook, str]:
    owner = owner or User.objects.filter(username="operator").first() or make_user("operator")
    config.setdefault("graph_name", "t-count")
    return hook_create(name=name, config=HookConfig(**config), user=owner, role=role)


def deliver(
    client: Client,
    name: str,
    secret: str,
    payload: Any = None,
    *,
    body: bytes | None = None,
    ts: int | None = None,
    content_type: str = "application/json",
    signature: str | None = None,
    headers: dict[str, str] | None = None,
) -> Any:
    raw = body if body is not None else json.dumps(payload if payload is not None else {}).encode()
    stamp = int(time.time()) if ts is None else ts
    sig = signature if signature is not None else signing.signature(secret=secret, timestamp=stamp, body=raw)
    return client.post(
        f"/api/hooks/{name}",
        data=raw,
        content_type=content_type,
        headers={signing.TIMESTAMP_HEADER: str(stamp), signing.SIGNATURE_HEADER: sig, **(headers or {})},
    )


def test_a_signed_delivery_starts_one_run_as_the_hooks_owner_and_records_it() -> None:
    hook, secret = make_hook(graph_name="t-count")
    answer = deliver(Client(), "alerts", secret, {"target": 2})
    assert answer.status_code == 202, answer.content
    body = answer.json()
    assert body["hook"] == "alerts" and body["duplicate"] is False
    run = Run.objects.get(trace_id=body["trace_id"])
    assert run.input == {"target": 2}
    key = HookDelivery.objects.get(hook=hook).idempotency_key
    assert run.context == {"user": "operator", "role": "operator", "hook": "alerts", "delivery": key}
    assert run.created_by == hook.owner
    audit = HookAudit.objects.get()
    assert (audit.outcome, audit.status_code, audit.trace_id, audit.remote_addr) == (
        "accepted",
        202,
        run.trace_id,
        "127.0.0.1",
    )
    assert secret not in json.dumps(run.context) and secret not in key


def test_the_same_delivery_twice_starts_one_run_and_answers_the_first_runs_trace_id() -> None:
    _, secret = make_hook()
    stamp = int(time.time())
    first = deliver(Client(), "alerts", secret, {"target": 1}, ts=stamp)
    again = deliver(Client(), "alerts", secret, {"target": 1}, ts=stamp)
    assert first.status_code == 202 and again.status_code == 200, again.content
    assert again.json() == {"trace_id": first.json()["trace_id"], "hook": "alerts", "duplicate": True}
    assert Run.objects.count() == 1 and HookDelivery.objects.count() == 1
    assert list(HookAudit.objects.order_by("id").values_list("outcome", flat=True)) == ["accepted", "duplicate"]


def test_a_retry_with_the_same_idempotency_header_is_one_run_and_another_body_under_that_key_is_refused() -> None:
    _, secret = make_hook(key_source="header", key_name="X-GitHub-Delivery")
    first = deliver(
        Client(), "alerts", secret, {"target": 1}, ts=int(time.time()) - 5, headers={"X-GitHub-Delivery": "d-1"}
    )
    retry = deliver(Client(), "alerts", secret, {"target": 1}, headers={"X-GitHub-Delivery": "d-1"})
    other = deliver(Client(), "alerts", secret, {"target": 2}, headers={"X-GitHub-Delivery": "d-1"})
    missing = deliver(Client(), "alerts", secret, {"target": 1})
    assert (first.status_code, retry.status_code) == (202, 200)
    assert retry.json()["trace_id"] == first.json()["trace_id"]
    assert other.status_code == 409 and other.json()["code"] == "idempotency_key_reused"
    assert missing.status_code == 400 and "X-GitHub-Delivery" in missing.json()["message"]
    assert Run.objects.count() == 1
    assert Run.objects.get().context["delivery"] == "d-1"


def test_the_idempotency_key_can_come_from_the_payload(alert_graph: str) -> None:
    _, secret = make_hook(
        graph_name=alert_graph,
        input_mode="fields",
        key_source="path",
        key_name="$.alert.id",
        input_mapping={"service": "$.alert.labels.service", "severity": "$.alert.severity"},
    )
    payload = {"alert": {"id": 41, "severity": "high", "labels": {"service": "db", "team": "x"}}}
    assert deliver(Client(), "alerts", secret, payload).status_code == 202
    assert deliver(Client(), "alerts", secret, payload, ts=int(time.time()) + 3).status_code == 200
    run = Run.objects.get()
    assert run.input == {"service": "db", "severity": "high"}
    assert run.context["delivery"] == "41"


def test_fields_picked_by_json_path_are_the_run_input_and_checked_against_the_graphs_schema(alert_graph: str) -> None:
    _, secret = make_hook(
        graph_name=alert_graph,
        input_mode="fields",
        input_mapping={"service": "$.alert.labels.service", "severity": "$.alert.severity"},
    )
    bad = deliver(Client(), "alerts", secret, {"alert": {"severity": "urgent"}})
    assert bad.status_code == 422, bad.content
    assert bad.json()["code"] == "invalid_input"
    paths = {e["path"] for e in bad.json()["details"]}
    assert paths == {"$", "$.severity"}  # service is missing; urgent is not low or high
    assert Run.objects.count() == 0 and HookDelivery.objects.count() == 0
    good = deliver(Client(), "alerts", secret, {"alert": {"severity": "low", "labels": {"service": "api"}}})
    assert good.status_code == 202
    assert Run.objects.get().input == {"service": "api", "severity": "low"}


def _refusal_cases(secret: str) -> dict[str, dict[str, Any]]:
    now = int(time.time())
    return {
        "bad signature": {"signature": "sha256=" + "0" * 64},
        "signed with another secret": {
            "signature": signing.signature(secret="not-" + secret, timestamp=now, body=b'{"target": 1}'),
            "ts": now,
            "body": b'{"target": 1}',
        },
        "malformed signature": {"signature": "v1=abc"},
        "missing signature": {"signature": ""},
        "stale timestamp": {"ts": now - 360},
        # Well past the 300 s tolerance: the server's second may tick over between this clock read and its own.
        "future timestamp": {"ts": now + 360},
        "wrong content type": {"content_type": "text/plain"},
        "form content type": {"content_type": "application/x-www-form-urlencoded"},
        "oversized body": {"body": b'{"pad": "' + b"x" * MAX_BODY_BYTES + b'"}'},
        "not JSON": {"body": b"{target: 1"},
        "NaN": {"body": b'{"target": NaN}'},
        "deeply nested": {"body": b"[" * 5000 + b"]" * 5000},
        "invalid input": {"payload": {"target": 0}},
    }


EXPECTED = {
    "bad signature": (401, "bad_signature"),
    "signed with another secret": (401, "bad_signature"),
    "malformed signature": (401, "bad_signature"),
    "missing signature": (401, "missing_signature"),
    "stale timestamp": (401, "stale_timestamp"),
    "future timestamp": (401, "future_timestamp"),
    "wrong content type": (415, "unsupported_media_type"),
    "form content type": (415, "unsupported_media_type"),
    "oversized body": (413, "payload_too_large"),
    "not JSON": (400, "malformed_request"),
    "NaN": (400, "malformed_request"),
    "deeply nested": (422, "too_deep"),
    "invalid input": (422, "invalid_input"),
}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_each_refusal_is_a_4xx_naming_its_reason_and_stores_one_audit_row_only(case: str) -> None:
    _, secret = make_hook()
    answer = deliver(Client(), "alerts", secret, **_refusal_cases(secret)[case])
    status, code = EXPECTED[case]
    assert answer.status_code == status, answer.content
    body = answer.json()
    assert body["code"] == code and body["message"]
    assert Run.objects.count() == 0 and HookDelivery.objects.count() == 0
    audit = HookAudit.objects.get()
    assert (audit.outcome, audit.status_code, audit.code, audit.reason) == ("refused", status, code, body["message"])
    assert secret not in audit.reason


def test_an_unknown_hook_is_a_404_audited_under_the_name_asked_for() -> None:
    answer = deliver(Client(), "nope", "x", {})
    assert answer.status_code == 404 and answer.json()["code"] == "unknown_hook"
    audit = HookAudit.objects.get()
    assert audit.hook is None and audit.hook_name == "nope" and audit.outcome == "refused"


def test_a_disabled_hook_refuses_signed_deliveries_and_an_unsigned_caller_learns_nothing_of_it() -> None:
    hook, secret = make_hook()
    hook_update(hook=hook, user=hook.owner, role="operator", enabled=False)  # type: ignore[arg-type]
    assert deliver(Client(), "alerts", secret, {}).status_code == 409
    assert deliver(Client(), "alerts", "guess", {}).json()["code"] == "bad_signature"
    assert Run.objects.count() == 0


def test_a_replayed_old_delivery_is_refused_even_within_its_key_window() -> None:
    _, secret = make_hook(key_source="header", key_name="Idempotency-Key")
    old = int(time.time()) - 3600
    answer = deliver(Client(), "alerts", secret, {"target": 1}, ts=old, headers={"Idempotency-Key": "k"})
    assert answer.status_code == 401 and "3600 s ago" in answer.json()["message"].replace("3601", "3600")
    assert Run.objects.count() == 0


def test_the_run_executes_with_the_owners_role_capped_by_the_role_they_acted_with() -> None:
    admin = make_user("admin")
    _, secret = make_hook(owner=admin, role="operator")  # an admin's operator token made it
    assert deliver(Client(), "alerts", secret, {"target": 1}).status_code == 202
    assert Run.objects.get().context["role"] == "operator"


def test_an_owner_who_may_no_longer_start_runs_gets_a_403_and_nothing_is_stored() -> None:
    hook, secret = make_hook()
    owner = hook.owner
    assert owner is not None
    owner.groups.remove(Group.objects.get(name="operator"))
    answer = deliver(Client(), "alerts", secret, {"target": 1})
    assert answer.status_code == 403 and answer.json()["code"] == "owner_cannot_start_runs"
    assert "'operator'" in answer.json()["message"] and "may no longer start runs" in answer.json()["message"]
    owner.is_active = False
    owner.save()
    assert "inactive" in deliver(Client(), "alerts", secret, {"target": 1}).json()["message"]
    owner.delete()
    assert "no owner" in deliver(Client(), "alerts", secret, {"target": 1}).json()["message"]
    assert Run.objects.count() == 0 and HookDelivery.objects.count() == 0
    assert HookAudit.objects.filter(outcome="refused", status_code=403).count() == 3


def test_a_hook_needs_no_session_and_a_session_or_token_does_not_replace_the_signature() -> None:
    _, secret = make_hook()
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.get(username="operator"))
    unsigned = client.post("/api/hooks/alerts", data=b"{}", content_type="application/json")
    assert unsigned.status_code == 401 and unsigned.json()["code"] == "missing_timestamp"
    signed = deliver(Client(enforce_csrf_checks=True), "alerts", secret, {"target": 1})
    assert signed.status_code == 202  # no CSRF token needed: the signature authenticates


def test_the_secret_is_in_no_log_line_run_or_audit_row(console_log: Any) -> None:
    _, secret = make_hook()
    deliver(Client(), "alerts", secret, {"target": 1})
    deliver(Client(), "alerts", secret, {"target": 1}, signature="sha256=" + "1" * 64)
    logs = console_log.getvalue()
    assert "hook delivery" in logs
    assert secret not in logs
    assert secret not in json.dumps(list(Run.objects.values("context", "input")), default=str)
    assert secret not in json.dumps(list(HookAudit.objects.values()), default=str)


def test_a_hook_gives_its_runs_its_concurrency_key_and_a_delivery_without_the_key_is_refused() -> None:
    _, secret = make_hook(concurrency={"key": "input.target", "limit": 1})
    answer = deliver(Client(), "alerts", secret, {"target": 2})
    assert answer.status_code == 202, answer.content
    assert Run.objects.get(trace_id=answer.json()["trace_id"]).concurrency_key == "t-count:2"
    refused = deliver(Client(), "alerts", secret, {})
    assert refused.status_code == 422 and "input.target" in refused.json()["message"]
    assert Run.objects.count() == 1
    with pytest.raises(Exception, match="concurrency: concurrency needs a limit"):
        make_hook("other", concurrency={"key": "input.target"})


def test_audit_rows_older_than_the_history_are_pruned_hourly(monkeypatch: pytest.MonkeyPatch) -> None:
    import datetime as dt

    from django.utils import timezone

    from hooks import services

    deliver(Client(), "no-such-hook", "x", {})
    deliver(Client(), "no-such-hook", "x", {})
    HookAudit.objects.filter(pk=HookAudit.objects.order_by("id").first().pk).update(
        received_at=timezone.now() - dt.timedelta(days=40)
    )
    monkeypatch.setattr(services, "_pruned_at", [-3600.0])
    assert services.audit_prune() == 1
    assert services.audit_prune() == 0
    assert HookAudit.objects.count() == 1
