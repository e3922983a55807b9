"""The demo's second graph, incident-research: what composition looks like (README "Branches, child runs, ...").

brief -> ask_metrics | ask_logs | ask_changes   (a static fan-out: three specialists asked at once)
      -> correlate                               (their join: the opinions, appended in branch order)
      -> scan_source x N, at most 2 at once      (a dynamic fan-out: one branch per log source)
      -> conclude                                (their join: findings appended, lines summed)
      -> heal_in_child                           (a child run of incident-healing, waited for)
      -> wait_recheck                            (a durable timer: the run sleeps holding no worker)
      -> recheck -> END
"""

from __future__ import annotations

from typing import Any

from runs.engine import END, graph, node
from runs.engine.composition import Send
from runs.engine.specialists import specialist

INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["service", "symptom"],
    "additionalProperties": False,
    "properties": {
        "service": {"type": "string", "minLength": 1, "maxLength": 80, "title": "Service"},
        "symptom": {"type": "string", "minLength": 1, "maxLength": 500, "title": "Symptom"},
        "sources": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": 80},
            "maxItems": 50,
            "default": ["gateway", "app", "db"],
            "title": "Log sources to scan",
        },
        "recheck_seconds": {"type": "integer", "minimum": 0, "maximum": 604800, "default": 5},
    },
}


@node("brief", timeout=10)
def brief(state: dict[str, Any], ctx: Any) -> Any:
    opened = ctx.activities.now()
    return ctx.result({**state, "opened_at": opened.isoformat(), "opinions": []})


def _asker(name: str, specialist_name: str) -> Any:
    def ask(state: dict[str, Any], ctx: Any) -> Any:
        answer = ctx.activities.send_a2a(
            specialist_name, "analyze", {"service": state["service"], "symptom": state["symptom"]}
        )
        opinion = {"from": specialist_name, "says": answer["opinion"], "confidence": answer["confidence"]}
        return ctx.result({**state, "opinions": [*state["opinions"], opinion]}, output=opinion)

    ask.__name__ = name
    ask.__qualname__ = name
    return ask


for _node, _specialist in (("ask_metrics", "metrics-analyst"), ("ask_logs", "log-analyst"),
                           ("ask_changes", "change-analyst")):
    node(_node, timeout=30)(_asker(_node, _specialist))


@node("correlate", timeout=10)
def correlate(state: dict[str, Any], ctx: Any) -> Any:
    lead = max(state["opinions"], key=lambda o: o["confidence"])
    sources = state.get("sources", ["gateway", "app", "db"])
    sends = [Send("scan_source", {"source": s, "service": state["service"], "findings": []}) for s in sources]
    return ctx.result({**state, "lead": lead, "findings": [], "lines_scanned": 0}, send=sends, limit=2)


@node("scan_source", timeout=30)
def scan_source(state: dict[str, Any], ctx: Any) -> Any:
    lines = ctx.activities.randint(2_000, 50_000)
    hit = ctx.activities.rand() < 0.5
    findings = [f"{state['source']}: {ctx.activities.randint(3, 40)} timeouts to {state['service']}"] if hit else []
    return ctx.result({**state, "findings": findings, "lines_scanned": lines}, output={"lines": lines})


@node("conclude", timeout=10)
def conclude(state: dict[str, Any], ctx: Any) -> Any:
    cause = state["lead"]["says"] if state["findings"] else "no evidence in the logs; trusting the lead opinion"
    return ctx.result({**state, "cause": cause})


@node("heal_in_child", timeout=10)
def heal_in_child(state: dict[str, Any], ctx: Any) -> Any:
    child = ctx.activities.start_run(
        "incident-healing", {"service": state["service"], "symptom": state["symptom"], "severity": "low"}
    )
    [result] = ctx.activities.wait_runs([child])
    return ctx.result({**state, "healing": {"trace_id": child["trace_id"], "status": result["status"]}})


@node("wait_recheck", timeout=10)
def wait_recheck(state: dict[str, Any], ctx: Any) -> Any:
    woke = ctx.activities.sleep(state.get("recheck_seconds", 5))
    return ctx.result({**state, "rechecked_at": woke["woke_at"]})


@node("recheck", timeout=10)
def recheck(state: dict[str, Any], ctx: Any) -> Any:
    healthy = state["healing"]["status"] == "COMPLETED"
    return ctx.result({**state, "healthy": healthy}, output={"healthy": healthy})


incident_research = graph(
    "incident-research",
    description=(
        "Ask three specialists at once, scan every log source (two at a time), heal in a child run of "
        "incident-healing, then sleep and re-check."
    ),
    entry="brief",
    edges=[
        ("brief", "ask_metrics"),
        ("brief", "ask_logs"),
        ("brief", "ask_changes"),
        ("ask_metrics", "correlate"),
        ("ask_logs", "correlate"),
        ("ask_changes", "correlate"),
        ("correlate", "scan_source"),
        ("scan_source", "conclude"),
        ("conclude", "heal_in_child"),
        ("heal_in_child", "wait_recheck"),
        ("wait_recheck", "recheck"),
        ("recheck", END),
    ],
    joins={
        "correlate": {"reducers": {"opinions": "append"}},
        "conclude": {"reducers": {"findings": "append", "lines_scanned": "sum"}},
    },
    input_schema=INPUT_SCHEMA,
    max_steps=50,
)


_OPINIONS = {
    "metrics-analyst": ("connection pool exhausted", 0.7),
    "log-analyst": ("timeouts to a dependency", 0.6),
    "change-analyst": ("the last deploy", 0.4),
}


def _analyst(name: str) -> Any:
    def analyze(task: str, payload: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
        opinion, confidence = _OPINIONS[name]
        return {"opinion": f"{opinion} on {payload.get('service')}", "confidence": confidence}

    return analyze


for _name in _OPINIONS:
    specialist(_name, capabilities=["analyze"])(_analyst(_name))


DEMO_RESEARCH_INPUTS: list[dict[str, Any]] = [
    # Scans three sources, heals, re-checks after 5 s and completes.
    {"service": "checkout", "symptom": "p99 latency over 2 s", "sources": ["gateway", "app", "db"]},
    # Scans five sources two at a time, then waits on its timer for a day.
    {"service": "search", "symptom": "error rate 4%", "sources": ["gateway", "app", "db", "cache", "queue"],
     "recheck_seconds": 86400},
]
DEMO_RESEARCH_SEEDS = [3, 5]
