"""The demo: an incident-healing graph and its in-process healer specialist.

``triage`` asks a model for the incident's severity and category when a provider is configured and falls
back to its rules otherwise (the decision is recorded, so a verify takes the run's path on any machine;
see runs.demo_llm, which also holds the demo's graph that always asks a model).

triage -> diagnose -> approve -(approved)-> heal -> verify -(retry)-> heal ... -(healed)-> report -> END
                             \\-(rejected)-> escalate -> report      \\-(give_up)-> escalate -> report
The heal/verify loop is bounded by ``max_heal_attempts``.

``approve`` asks for approval of the heal plan (``ctx.activities.request_approval``):
flushing a cache or recycling a pool is a low-risk POST and is auto-approved; a
rollback (a DELETE of the current release) or deleting old logs (``rm -rf``) is
high risk and waits in the approvals inbox. A rejection or an expiry routes
the run to ``escalate``.
"""

from __future__ import annotations

from typing import Any

from runs.demo_llm import triage_decide
from runs.engine import END, RetryPolicy, graph, node
from runs.engine.specialists import specialist

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["service", "symptom"],
    "additionalProperties": False,
    "properties": {
        "service": {"type": "string", "minLength": 1, "maxLength": 80, "title": "Service"},
        "symptom": {"type": "string", "minLength": 1, "maxLength": 500, "title": "Symptom"},
        "severity": {"type": "string", "enum": ["low", "medium", "high"], "default": "medium"},
        "max_heal_attempts": {"type": "integer", "minimum": 1, "maximum": 5, "default": 3},
        "pager_reachable": {"type": "boolean", "default": True},
    },
}


@node("triage", timeout=60)
def triage(state: dict[str, Any], ctx: Any) -> Any:
    detected_at = ctx.activities.now()
    decided = triage_decide(state, ctx)  # a model's answer when one is configured, else the rules (runs.demo_llm)
    severity, category = decided["severity"], decided["category"]
    runbook = (
        f"# Runbook for {state['service']}\n\nSymptom: {state['symptom']}\nSeverity: {severity}\n"
        f"Category: {category}\nTriaged by: {decided['by']}\n"
    )
    ctx.activities.write_artifact(f"{ctx.trace_id}/runbook.md", runbook)
    return ctx.result(
        {
            **state,
            "severity": severity,
            "category": category,
            "triage": decided,
            "detected_at": detected_at.isoformat(),
            "heal_attempts": 0,
        },
        output={"severity": severity, "category": category, "triaged_by": decided["by"]},
    )


@node("diagnose", timeout=10)
def diagnose(state: dict[str, Any], ctx: Any) -> Any:
    runbook = ctx.activities.read_artifact(f"{ctx.trace_id}/runbook.md")
    hypotheses = ["stale cache", "connection pool exhausted", "bad deploy", "disk full"]
    pick = hypotheses[ctx.activities.randint(0, len(hypotheses) - 1)]
    return ctx.result(
        {**state, "hypothesis": pick, "runbook_lines": len(runbook.splitlines())}, output={"hypothesis": pick}
    )


def heal_plan(service: str, hypothesis: str) -> tuple[dict[str, Any], str]:
    """The action the healer will take for ``hypothesis`` and its preview for the approver."""
    plans: dict[str, dict[str, Any]] = {
        "stale cache": {"api_calls": [f"POST /v1/services/{service}/cache/flush"]},
        "connection pool exhausted": {"api_calls": [f"POST /v1/services/{service}/pool/recycle"]},
        "bad deploy": {
            "api_calls": [f"DELETE /v1/services/{service}/releases/current"],
            "commands": [f"kubectl rollout undo deployment/{service}"],
        },
        "disk full": {
            "commands": [f"rm -rf /var/log/{service}/archive", f"logrotate --force /etc/logrotate.d/{service}"],
            "files": [f"/var/log/{service}/"],
        },
    }
    action = plans.get(hypothesis, {"commands": [f"systemctl restart {service}"]})
    preview = "\n".join(
        [f"$ {c}" for c in action.get("commands", [])] + [f"> {a}" for a in action.get("api_calls", [])]
    )
    return action, preview


@node("approve", timeout=10)
def approve(state: dict[str, Any], ctx: Any) -> Any:
    action, preview = heal_plan(state["service"], state["hypothesis"])
    decision = ctx.activities.request_approval(action, preview=preview)
    edge = "approved" if decision["approved"] else "rejected"
    return ctx.result({**state, "plan": action, "approval": decision}, edge=edge, output=decision)


@node("heal", timeout=30, retry=RetryPolicy(max_attempts=3, backoff=0.2))
def heal(state: dict[str, Any], ctx: Any) -> Any:
    answer = ctx.activities.send_a2a(
        "healer",
        "heal",
        {
            "service": state["service"],
            "hypothesis": state["hypothesis"],
            "plan": state.get("plan", {}),
            "write_scope": f"healing/{state['service']}",
        },
    )
    attempts = state["heal_attempts"] + 1
    return ctx.result({**state, "heal_attempts": attempts, "last_action": answer["action"]}, output=answer)


@node("verify", timeout=10)
def verify(state: dict[str, Any], ctx: Any) -> Any:
    healthy = ctx.activities.rand() < 0.6
    if healthy:
        return ctx.result({**state, "healthy": True}, edge="healed")
    if state["heal_attempts"] >= state.get("max_heal_attempts", 3):
        return ctx.result({**state, "healthy": False}, edge="give_up")
    return ctx.result({**state, "healthy": False}, edge="retry")


@node("escalate", timeout=10)
def escalate(state: dict[str, Any], ctx: Any) -> Any:
    if not state.get("pager_reachable", True):
        raise RuntimeError(f"pager for {state['service']} is unreachable; nobody was notified")
    return ctx.result({**state, "escalated_at": ctx.activities.now().isoformat()}, edge=None)


@node("report", timeout=10)
def report(state: dict[str, Any], ctx: Any) -> Any:
    outcome = "healed" if state.get("healthy") else "escalated"
    approval = state.get("approval", {})
    verdict = "approved" if approval.get("approved") else f"not approved ({approval.get('reason', '')})"
    triaged = f"{state['severity']} {state.get('category', 'other')} (by {state.get('triage', {}).get('by', 'rules')})"
    text = (
        f"Incident on {state['service']}: {state['symptom']}\nTriage: {triaged}\n"
        f"Hypothesis: {state['hypothesis']}\n"
        f"Heal plan: {verdict}\nHeal attempts: {state['heal_attempts']}\nOutcome: {outcome}\n"
    )
    ref = ctx.activities.write_artifact(f"{ctx.trace_id}/report.txt", text)
    return ctx.result({**state, "outcome": outcome, "report": ref["name"]}, output={"outcome": outcome})


incident_healing = graph(
    "incident-healing",
    description=(
        "Triage an incident, diagnose it, get the heal plan approved, let the healer specialist fix it, verify, report."
    ),
    entry="triage",
    edges=[
        ("triage", "diagnose"),
        ("diagnose", "approve"),
        ("approve", "heal", "approved"),
        ("approve", "escalate", "rejected"),
        ("heal", "verify"),
        ("verify", "heal", "retry"),
        ("verify", "report", "healed"),
        ("verify", "escalate", "give_up"),
        ("escalate", "report"),
        ("report", END),
    ],
    input_schema=INPUT_SCHEMA,
    max_steps=50,
)


@specialist("healer", capabilities=["heal", "selector_history"])
def healer(task: str, payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    actions = {
        "stale cache": "flushed the cache",
        "connection pool exhausted": "recycled the connection pool",
        "bad deploy": "rolled back to the previous release",
        "disk full": "rotated and compressed logs",
    }
    return {
        "action": actions.get(payload.get("hypothesis", ""), "restarted the service"),
        "service": payload.get("service"),
    }


DEMO_INPUTS: list[dict[str, Any]] = [
    {"service": "checkout", "symptom": "p99 latency over 2 s", "severity": "high"},
    {"service": "search", "symptom": "error rate 4%", "severity": "medium"},
    {"service": "reports", "symptom": "jobs stuck in queue", "severity": "low", "max_heal_attempts": 1},
    {
        "service": "ledger",
        "symptom": "timeouts to the bank API",
        "severity": "high",
        "max_heal_attempts": 1,
        "pager_reachable": False,
    },
]
# Seeds chosen so the demo shows (the hypothesis is drawn from the seed):
# - checkout: "stale cache", the plan is auto-approved (low risk), healed at the first attempt;
# - search: "stale cache", auto-approved, a retry loop, healed at the third attempt;
# - reports: "bad deploy", a rollback (DELETE of the release) is high risk: the run WAITS in the
#   approvals inbox; approved, the heal fails to verify once and the run escalates; rejected
#   (or expired after 4 h), it escalates at once; either way it completes with a report;
# - ledger: "connection pool exhausted", auto-approved, gives up after one attempt, and the
#   escalation FAILS on purpose: the pager is unreachable.
DEMO_SEEDS = [4, 24, 7, 11]


# The demo's second graph (branches, a child run of this one, a durable timer), registered with this module;
# its third, incident-summary-llm, registers with runs.demo_llm (imported above).
from runs import demo_research  # noqa: E402,F401
