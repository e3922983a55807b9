"""Every Rego rule in approvals/policies with allowed and denied inputs, on the real regopy bundle;
then the engine hook: a denial fails the activity with the rule's message and is recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from regopy import RegoError

import tests.graphs_approvals  # noqa: F401 - registers ap_call and the ap_echo specialist
from approvals.policy import RUN_START, PolicyEngine, policy_input
from runs.engine.errors import PolicyDenied
from runs.engine.executor import Outcome
from runs.models import Activity, Specialist
from runs.services.runs import run_start
from tests.helpers import execute

MB10 = 10 * 1024 * 1024


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine(registry=lambda: ["healer", "scout", "ap_echo"], registry_ttl=3600, record=False)


def a2a(
    specialist: str, task: str = "heal", *, role: str = "operator", size: int = 100, **payload: Any
) -> dict[str, Any]:
    return policy_input("send_a2a", {"specialist": specialist, "task": task, "payload": payload}, size=size, role=role)


# (rule, input, expected denial substring or None for allowed)
CASES: list[tuple[str, dict[str, Any], str | None]] = [
    # selector history is the healer's
    ("selector-history", a2a("healer", "selector_history"), None),
    ("selector-history", a2a("healer", "heal", fields=["selector_history"]), None),
    (
        "selector-history",
        a2a("scout", "selector_history"),
        "selector history is reserved to the healer specialist (requested by scout)",
    ),
    ("selector-history", a2a("scout", "heal", fields=["selector_history"]), "reserved to the healer specialist"),
    (
        "selector-history",
        policy_input(
            "call_mcp", {"server": "s", "tool": "t", "arguments": {"fields": ["selector_history"]}}, size=9, role=""
        ),
        "requested by activity call_mcp",
    ),
    # the field and task names are case-insensitive, as the PII names are
    ("selector-history", a2a("scout", "Selector_History"), "reserved to the healer specialist (requested by scout)"),
    ("selector-history", a2a("scout", "heal", fields=["SELECTOR_HISTORY"]), "reserved to the healer specialist"),
    # write scopes under healing/*
    ("write-scope", a2a("healer", write_scope="healing/checkout"), None),
    ("write-scope", a2a("healer", write_scopes=["healing/a/b", "healing/c"]), None),
    ("write-scope", a2a("healer"), None),
    ("write-scope", a2a("healer", write_scope="prod/checkout"), "write scope prod/checkout is outside healing/*"),
    ("write-scope", a2a("healer", write_scope="healing"), "write scope healing is outside healing/*"),
    ("write-scope", a2a("healer", write_scope="/healing/x"), "outside healing/*"),
    (
        "write-scope",
        a2a("healer", write_scopes=["healing/ok", "healing/../etc"]),
        "write scope healing/../etc is outside",
    ),
    # PII needs the admin role
    ("pii", a2a("healer", fields=["email", "phone"], role="admin"), None),
    ("pii", a2a("healer", fields=["service", "latency"], role="operator"), None),
    (
        "pii",
        a2a("healer", fields=["email"], role="operator"),
        "field email is personal data (PII): only the admin role may request it (role: operator)",
    ),
    (
        "pii",
        a2a("healer", fields=["SSN"], role=""),
        "field SSN is personal data (PII): only the admin role may request it (role: none)",
    ),
    ("pii", a2a("healer", fields=["ip_address"], role="approver"), "field ip_address is personal data"),
    # payloads up to 10 MB
    ("payload-size", a2a("healer", size=MB10), None),
    ("payload-size", policy_input("now", {}, size=2, role=""), None),
    ("payload-size", a2a("healer", size=MB10 + 1), "payload of 10485761 bytes is over the 10 MB limit"),
    (
        "payload-size",
        policy_input("write_artifact", {"name": "x"}, size=50 * 1024 * 1024, role=""),
        "over the 10 MB limit",
    ),
    # registered specialists only
    ("registry", a2a("healer"), None),
    ("registry", policy_input("http", {"method": "GET", "url": "http://x"}, size=10, role=""), None),
    ("registry", a2a("ghost"), "specialist ghost is not registered"),
    ("registry", a2a("Healer"), "specialist Healer is not registered"),
]


@pytest.mark.parametrize(("rule", "inp", "denial"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_policy_rule(engine: PolicyEngine, rule: str, inp: dict[str, Any], denial: str | None) -> None:
    denials = engine.evaluate(inp)
    assert engine.evaluate_uncached(inp) == denials == engine.evaluate(inp)  # the cache answers alike
    if denial is None:
        assert denials == []
    else:
        assert any(denial in d for d in denials), denials


def test_every_rule_has_an_allowed_and_a_denied_case() -> None:
    for rule in {c[0] for c in CASES}:
        outcomes = {c[2] is None for c in CASES if c[0] == rule}
        assert outcomes == {True, False}, rule


def test_all_denials_of_one_request_are_reported(engine: PolicyEngine) -> None:
    inp = a2a("ghost", "selector_history", size=MB10 + 5, fields=["email"], write_scope="etc")
    assert len(engine.evaluate(inp)) == 5


def test_the_bundle_is_compiled_once(engine: PolicyEngine) -> None:
    before = engine.builds
    for i in range(50):
        engine.evaluate(a2a("healer", size=i))
    assert engine.builds == before <= 1


def test_a_broken_policy_file_fails_at_compile_time(tmp_path: Path) -> None:
    (tmp_path / "bad.rego").write_text("package cmo.main\nimport rego.v1\ndeny := {x | x := }\n")
    with pytest.raises(RegoError):
        PolicyEngine(policy_dir=tmp_path, registry=lambda: [], registry_ttl=0, record=False).refresh()


# -- in the engine, with the database ----------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_run_naming_an_unregistered_specialist_is_denied_at_start_with_the_rule_message() -> None:
    run = run_start(graph_name="ap-call", data={"specialist": "ghost"}, seed=1)
    assert execute(run, policy=PolicyEngine(registry_ttl=0)) is Outcome.FAILED
    run.refresh_from_db()
    assert run.status == "FAILED"
    assert "denied by policy: specialist ghost is not registered" in run.error
    event = run.events.get(kind="policy_denied")
    assert event.actor == "policy" and event.step == 0
    assert event.detail["denials"] == ["specialist ghost is not registered"]
    assert event.detail["activity"] == RUN_START
    assert not Activity.objects.filter(run=run).exists(), "a run denied at start does no effect at all"


@pytest.mark.django_db(transaction=True)
def test_the_role_of_who_started_the_run_is_the_input() -> None:
    data = {"specialist": "ap_echo", "payload": {"fields": ["email"]}}
    admin_run = run_start(graph_name="ap-call", data=data, seed=1, role="admin")
    assert execute(admin_run, policy=PolicyEngine(registry_ttl=0)) is Outcome.COMPLETED
    operator_run = run_start(graph_name="ap-call", data=data, seed=1, role="operator")
    assert execute(operator_run, policy=PolicyEngine(registry_ttl=0)) is Outcome.FAILED
    operator_run.refresh_from_db()
    assert "field email is personal data (PII)" in operator_run.error


@pytest.mark.django_db(transaction=True)
def test_the_registry_is_the_data_and_changes_rebuild_the_bundle() -> None:
    Specialist.objects.create(name="ap_echo", registered=False)
    engine = PolicyEngine(registry_ttl=0)
    inp = a2a("ap_echo")
    assert engine.evaluate(inp) == ["specialist ap_echo is not registered"]
    Specialist.objects.filter(name="ap_echo").update(registered=True, enabled=False)
    assert engine.evaluate(inp) == ["specialist ap_echo is not registered"]
    builds = engine.builds
    Specialist.objects.filter(name="ap_echo").update(enabled=True)
    assert engine.evaluate(inp) == []
    assert engine.builds == builds + 1
    engine.evaluate(inp)
    assert engine.builds == builds + 1, "an unchanged registry must not rebuild the bundle"


@pytest.mark.django_db(transaction=True)
def test_run_start_is_checked_too() -> None:
    from runs.services.run_store import DjangoCheckpointer

    engine = PolicyEngine(registry_ttl=0)
    run = run_start(graph_name="ap-call", data={"specialist": "ap_echo", "fields": ["ssn"]}, seed=1, role="viewer")
    with pytest.raises(PolicyDenied, match="field ssn is personal data"):
        engine.check_run_start(DjangoCheckpointer(owner="t").load(run.pk))
    assert run.events.filter(kind="policy_denied", detail__activity="run_start").exists()
    ok = run_start(graph_name="ap-call", data={"specialist": "ap_echo"}, seed=1, role="viewer")
    engine.check_run_start(DjangoCheckpointer(owner="t").load(ok.pk))
