"""Managing hooks: the API (roles, secrets shown once, edits that change the owner, rotation), admin, and the
pages (list, create form with CSRF, the hook page with its call instructions, deliveries and refusals)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from hooks import signing
from hooks.models import Hook, HookAudit
from runs.models import AuditEvent, Run
from tests.conftest import service_missing
from tests.unit.api_fixtures import assert_error, client_as, post_json, token_client, user_with

pytestmark = pytest.mark.django_db


def create(client: Client, name: str = "alerts", **fields: Any) -> Any:
    return post_json(client, "/api/hooks", {"name": name, "graph": "t-count", **fields})


def deliver(name: str, secret: str, payload: Any, **headers: str) -> Any:
    body = json.dumps(payload).encode()
    stamp = int(time.time())
    return Client().post(
        f"/api/hooks/{name}",
        data=body,
        content_type="application/json",
        headers={
            signing.TIMESTAMP_HEADER: str(stamp),
            signing.SIGNATURE_HEADER: signing.signature(secret=secret, timestamp=stamp, body=body),
            **headers,
        },
    )


def patch(client: Client, name: str, body: Any) -> Any:
    return client.patch(f"/api/hooks/{name}", data=json.dumps(body), content_type="application/json")


def test_an_operator_creates_a_hook_and_its_secret_is_returned_once() -> None:
    operator = client_as("operator")
    answer = create(operator, description="PagerDuty alerts", key_source="header", key_name="Idempotency-Key")
    assert answer.status_code == 201, answer.content
    secret = answer.json()["secret"]
    assert len(secret) >= 43
    assert answer.json()["hook"]["owner"] == "operator-user" and answer.json()["hook"]["owner_role"] == "operator"
    for path in ("/api/hooks", "/api/hooks/alerts"):
        read = operator.get(path)
        assert read.status_code == 200 and secret not in read.content.decode() and "secret" not in read.json()
    assert Hook.objects.get().secret == secret
    assert AuditEvent.objects.filter(action="hook_created", target="hook:alerts").exists()
    assert secret not in json.dumps(list(AuditEvent.objects.values("detail")))


def test_a_viewer_may_read_hooks_but_not_create_change_rotate_or_delete_them() -> None:
    create(client_as("operator"))
    viewer = client_as("viewer")
    assert viewer.get("/api/hooks").status_code == 200
    assert viewer.get("/api/hooks/alerts").status_code == 200
    assert_error(create(viewer, "mine"), 403, "forbidden")
    assert_error(patch(viewer, "alerts", {"description": "x"}), 403, "forbidden")
    assert_error(post_json(viewer, "/api/hooks/alerts/rotate-secret"), 403, "forbidden")
    assert_error(viewer.delete("/api/hooks/alerts"), 403, "forbidden")
    assert Hook.objects.count() == 1


def test_an_admins_viewer_token_is_a_viewer_and_no_credentials_is_a_401() -> None:
    admin = user_with("boss", "admin")
    viewer_token, _ = token_client(admin, "viewer")
    assert_error(create(viewer_token), 403, "forbidden")
    assert_error(create(Client()), 401, "unauthenticated")
    assert_error(Client().get("/api/hooks"), 401, "unauthenticated")


def test_creating_refuses_an_unknown_graph_a_bad_mapping_a_bad_key_a_taken_or_reserved_name() -> None:
    operator = client_as("operator")
    assert "unknown graph 'nope'" in assert_error(create(operator, graph="nope"), 422, "invalid_hook")["message"]
    bad_path = assert_error(create(operator, input_mode="fields", input_mapping={"a": "alert.x"}), 422, "invalid_hook")
    assert "must start with $" in bad_path["message"]
    assert_error(create(operator, input_mode="fields", input_mapping={"a": "$.a["}), 422, "invalid_hook")
    assert_error(create(operator, input_mode="fields"), 422, "invalid_hook")
    assert_error(create(operator, key_source="header", key_name="Bad Header:"), 422, "invalid_hook")
    assert_error(create(operator, key_source="path", key_name="id"), 422, "invalid_hook")
    assert_error(create(operator, "new"), 422, "invalid_hook")
    assert_error(create(operator, "has space"), 422, "validation_error")
    assert create(operator).status_code == 201
    assert_error(create(operator), 409, "hook_exists")


def test_another_operator_editing_an_admins_hook_becomes_its_owner_with_the_operator_role() -> None:
    admin_client, _ = token_client(user_with("boss", "admin"), "admin")
    created = create(admin_client)
    secret = created.json()["secret"]
    assert created.json()["hook"]["owner_role"] == "admin"
    operator = client_as("operator")
    described = patch(operator, "alerts", {"description": "only words"})
    assert described.json()["owner"] == "boss"  # a description starts nothing: the owner stays
    disabled = patch(operator, "alerts", {"enabled": False})
    assert disabled.json()["owner"] == "boss" and disabled.json()["enabled"] is False
    edited = patch(operator, "alerts", {"input_mode": "fields", "input_mapping": {"target": "$.n"}, "enabled": True})
    assert edited.status_code == 200, edited.content
    assert (edited.json()["owner"], edited.json()["owner_role"]) == ("operator-user", "operator")
    assert deliver("alerts", secret, {"n": 2}).status_code == 202
    run = Run.objects.get()
    assert (run.context["user"], run.context["role"], run.input) == ("operator-user", "operator", {"target": 2})
    changes = AuditEvent.objects.filter(action="hook_changed").order_by("id")
    assert changes.count() == 3 and "owner" in changes.last().detail["changed"]  # type: ignore[union-attr]


def test_enabling_a_hook_takes_it_over_and_version_latest_follows_the_newest() -> None:
    admin_client, _ = token_client(user_with("boss", "admin"), "admin")
    create(admin_client, enabled=False)
    operator = client_as("operator")
    enabled = patch(operator, "alerts", {"enabled": True})
    assert enabled.json()["owner"] == "operator-user"
    assert_error(patch(operator, "alerts", {"version": 999}), 422, "invalid_hook")
    assert patch(operator, "alerts", {"latest": True}).json()["version"] is None


def test_rotating_the_secret_stops_the_old_one_at_once_and_makes_the_rotator_the_owner() -> None:
    admin_client, _ = token_client(user_with("boss", "admin"), "admin")
    old = create(admin_client).json()["secret"]
    operator = client_as("operator")
    rotated = post_json(operator, "/api/hooks/alerts/rotate-secret")
    assert rotated.status_code == 200, rotated.content
    new = rotated.json()["secret"]
    assert new != old and rotated.json()["hook"]["owner"] == "operator-user"
    assert rotated.json()["hook"]["owner_role"] == "operator"
    assert deliver("alerts", old, {"target": 1}).status_code == 401
    assert deliver("alerts", new, {"target": 1}).status_code == 202
    assert Run.objects.get().context["role"] == "operator"


def test_deleting_a_hook_keeps_its_audit_rows_and_its_runs() -> None:
    operator = client_as("operator")
    secret = create(operator).json()["secret"]
    deliver("alerts", secret, {"target": 1})
    assert operator.delete("/api/hooks/alerts").json() == {"name": "alerts", "deleted": True}
    assert Hook.objects.count() == 0 and Run.objects.count() == 1
    assert HookAudit.objects.get().hook_name == "alerts"
    assert_error(operator.get("/api/hooks/alerts"), 404, "not_found")


# -- admin -------------------------------------------------------------------------------------------


def test_admin_lists_and_edits_hooks_without_ever_showing_the_secret() -> None:
    operator = client_as("operator")
    secret = create(operator).json()["secret"]
    admin = Client()
    admin.force_login(User.objects.create_superuser("root", password="x"))
    changelist = admin.get("/admin/hooks/hook/")
    assert changelist.status_code == 200 and b"alerts" in changelist.content
    assert secret.encode() not in changelist.content
    change = admin.get(f"/admin/hooks/hook/{Hook.objects.get().pk}/change/")
    assert (
        change.status_code == 200 and secret.encode() not in change.content and b'name="secret"' not in change.content
    )


# -- pages ---------------------------------------------------------------------------------------------


def signed_in(role: str) -> Client:
    client = Client()
    client.force_login(user_with(f"{role}-user", role))
    return client


def new_hook_form(**fields: str) -> dict[str, str]:
    return {
        "name": "alerts",
        "graph": "t-count",
        "version": "",
        "input_mode": "body",
        "input_mapping": "",
        "key_source": "signature",
        "key_name": "",
        "tolerance_seconds": "300",
        **fields,
    }


def test_an_operator_creates_a_hook_from_the_page_and_sees_its_secret_once_and_how_to_call_it() -> None:
    page = signed_in("operator")
    form = page.get("/hooks/new/")
    assert form.status_code == 200 and b"t-count" in form.content
    made = page.post("/hooks/new/", new_hook_form(description="<script>alert(1)</script>"))
    assert made.status_code == 201, made.content.decode()[:2000]
    secret = Hook.objects.get().secret
    text = made.content.decode()
    assert secret in text and "no-store" in made["Cache-Control"]
    assert "http://testserver/api/hooks/alerts" in text and "X-CMO-Signature" in text and "openssl dgst" in text
    assert "<script>alert(1)</script>" not in text and "&lt;script&gt;" in text
    again = page.get("/hooks/alerts/")
    assert again.status_code == 200 and secret not in again.content.decode()
    listing = page.get("/hooks/")
    assert b'href="/hooks/alerts/"' in listing.content and secret.encode() not in listing.content


def test_the_create_form_shows_the_services_reasons_and_needs_csrf() -> None:
    page = signed_in("operator")
    bad = page.post("/hooks/new/", new_hook_form(input_mode="fields", input_mapping='{"a": "nope"}'))
    assert bad.status_code == 400 and b"must start with $" in bad.content
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(User.objects.get(username="operator-user"))
    assert strict.post("/hooks/new/", new_hook_form()).status_code == 403
    assert Hook.objects.count() == 0


def test_a_viewer_sees_hook_pages_without_the_create_form_or_the_operator_buttons() -> None:
    post_json(client_as("operator"), "/api/hooks", {"name": "alerts", "graph": "t-count"})
    viewer = signed_in("viewer")
    assert viewer.get("/hooks/").status_code == 200
    assert b"New hook" not in viewer.get("/hooks/").content
    detail = viewer.get("/hooks/alerts/")
    assert detail.status_code == 200 and b"Rotate secret" not in detail.content
    assert viewer.get("/hooks/new/").status_code == 403
    assert viewer.post("/hooks/alerts/rotate/").status_code == 403
    assert viewer.post("/hooks/alerts/enable/", {"enabled": "0"}).status_code == 403
    assert Client().get("/hooks/").status_code == 302  # sign in first
    assert Hook.objects.get().enabled


def test_the_hook_page_lists_deliveries_with_their_runs_and_refusals_with_their_reasons() -> None:
    secret = create(client_as("operator")).json()["secret"]
    trace = deliver("alerts", secret, {"target": 1}).json()["trace_id"]
    deliver("alerts", "wrong", {"target": 1})
    deliver("alerts", secret, {"target": 0})
    page = signed_in("operator").get("/hooks/alerts/").content.decode()
    assert f'href="/runs/{trace}/"' in page
    assert "bad_signature" in page and "the signature does not match" in page
    assert "invalid_input" in page


def test_rotating_from_the_page_shows_the_new_secret_once() -> None:
    old = create(client_as("operator")).json()["secret"]
    page = signed_in("operator")
    rotated = page.post("/hooks/alerts/rotate/")
    new = Hook.objects.get().secret
    assert rotated.status_code == 200 and new != old and new in rotated.content.decode()
    assert page.post("/hooks/alerts/enable/", {"enabled": "0"}).status_code == 302
    assert not Hook.objects.get().enabled


def test_the_pages_curl_snippet_signs_as_the_server_checks() -> None:
    if shutil.which("openssl") is None:
        service_missing("openssl (the page's curl snippet signs with it)")
    secret = create(client_as("operator")).json()["secret"]
    from hooks.examples import call_example

    call = call_example(hook=Hook.objects.get(), url="http://x/api/hooks/alerts")
    script = call["curl"].split("curl -sS")[0] + 'printf "%s %s" "$TS" "$SIG"'
    out = subprocess.run(
        ["bash", "-c", script],
        env={"CMO_HOOK_SECRET": secret, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    stamp, sig = out
    assert f"sha256={sig}" == signing.signature(secret=secret, timestamp=stamp, body=call["body"].encode())
