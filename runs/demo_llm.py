"""The demo's model calls: the incident triage asks a model when one is configured, and a graph always asks one.

Whether the demo asks a model is decided once per step and recorded, by the ``llm_choice`` activity: the
provider ``CMO_LLM_DEFAULT_PROVIDER`` names, else the first configured one (``provider_configured()``), with
its default model; or none. A replay, a verify and a fork's copied steps read the decision from the record,
so they take the path the run took whatever the configuration of the machine that re-executes them; the
provider and the model are passed to ``ctx.activities.llm`` explicitly, so the recorded request does not
depend on that configuration either.

- incident-healing's ``triage`` (runs.demo): with a model, :func:`triage_decide` asks it for the incident's
  severity and category as JSON (``response_format`` json_schema), checks the answer and uses it; with no
  model, a failed call (unreachable, refused by a policy or a budget) or an unusable answer, the rules decide:
  the severity the incident was reported with (medium by default) and a category from the symptom's words.
- ``incident-summary-llm``: summarise -> publish -> END. ``summarise`` asks the model for a summary of the
  incident with the ``lookup_runbook`` tool offered; when the model calls it, the node looks the runbook up
  (a table in this module: no I/O) and asks again with the result; ``publish`` writes the summary as an
  artifact. With no provider configured it fails at once, saying so.

The demo (``manage.py cmo_demo``) also imports one recorded run of ``incident-summary-llm``
(:data:`RECORDED_BUNDLE`, made by ``python -m tests.bench.make_demo_llm_bundle`` against the local model
server of the tests, as provider "openai", model "gpt-4o-mini", with a price table), imported once by the
``recorded-demo`` system user and labelled with :data:`RECORDED_NOTE`, so its conversation, its costs and
its verification can be seen on a machine without a provider.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings

from runs.engine import END, graph, node
from runs.engine.errors import ActivityError
from runs.llm.providers import provider_configured, provider_get

CHOICE_KIND = "llm_choice"
SEVERITIES = ("low", "medium", "high")
CATEGORIES = ("latency", "errors", "dependency", "capacity", "other")
# The rules' categories: the first whose words the symptom contains (lower case), else "other".
CATEGORY_WORDS: list[tuple[str, tuple[str, ...]]] = [
    ("latency", ("latency", "slow", "p99", "p95")),
    ("errors", ("error", "5xx", "exception", "crash")),
    ("dependency", ("timeout", "upstream", "api", "unreachable")),
    ("capacity", ("queue", "disk", "memory", "cpu", "stuck", "full")),
]

RECORDED_BUNDLE = Path(__file__).parent / "demo_bundles" / "incident-summary-llm.json"
RECORDED_USER = "recorded-demo"
RECORDED_NOTE = "recorded demo run: made against a local model server, not a real provider"


# -- the decision ------------------------------------------------------------------------------------------


def _configured_model() -> dict[str, Any]:
    """The provider and model the demo would ask here, or why none (the effect of ``llm_choice``)."""
    name = str(getattr(settings, "CMO_LLM_DEFAULT_PROVIDER", "") or "") or provider_configured()
    if not name:
        return {"provider": None, "model": None, "reason": "no model provider is configured (CMO_LLM_PROVIDERS)"}
    try:
        provider = provider_get(name)
    except ActivityError as exc:
        return {"provider": None, "model": None, "reason": exc.message}
    if not provider.default_model:
        return {"provider": None, "model": None, "reason": f"provider {name!r} has no default_model"}
    return {"provider": name, "model": provider.default_model}


def model_choice(ctx: Any) -> dict[str, Any]:
    """``{"provider", "model"}`` (both None, with a ``reason``, when no model is to be asked), decided by this
    machine's configuration the first time the step runs and read from the record ever after."""
    return dict(ctx.activities.call(CHOICE_KIND, {}, _configured_model))


# -- the triage --------------------------------------------------------------------------------------------

TRIAGE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["severity", "category", "reason"],
    "properties": {
        "severity": {"type": "string", "enum": list(SEVERITIES)},
        "category": {"type": "string", "enum": list(CATEGORIES)},
        "reason": {"type": "string"},
    },
}
TRIAGE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": "incident_triage", "strict": True, "schema": TRIAGE_SCHEMA},
}
TRIAGE_SYSTEM = (
    "You triage production incidents for the on-call engineer. Classify the incident's severity "
    f"({', '.join(SEVERITIES)}) and category ({', '.join(CATEGORIES)}) and give a one-sentence reason. "
    "Answer with the JSON object only."
)


def category_of(text: str) -> str:
    lowered = text.lower()
    return next((cat for cat, words in CATEGORY_WORDS if any(w in lowered for w in words)), "other")


def triage_rules(state: dict[str, Any]) -> dict[str, Any]:
    """The rules: the reported severity (medium by default) and the category the symptom's words give."""
    return {"by": "rules", "severity": state.get("severity", "medium"), "category": category_of(state["symptom"])}


def triage_parse(text: str) -> dict[str, Any] | None:
    """The model's answer as ``{"severity", "category", "reason"}``, or None when it is not a usable triage."""
    try:
        answer = json.loads(text)
    except (TypeError, ValueError):
        return None
    if not isinstance(answer, dict):
        return None
    severity, category, reason = answer.get("severity"), answer.get("category"), answer.get("reason", "")
    if severity not in SEVERITIES or category not in CATEGORIES or not isinstance(reason, str):
        return None
    return {"severity": severity, "category": category, "reason": reason[:500]}


def triage_decide(state: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """``{"by": "model" | "rules", "severity", "category", ...}``: the model's triage when one is configured
    and its answer is usable, the rules' otherwise (with why the model's was not used)."""
    rules = triage_rules(state)
    choice = model_choice(ctx)
    if not choice.get("provider"):
        return rules
    reported = state.get("severity", "medium")
    messages = [
        {"role": "system", "content": TRIAGE_SYSTEM},
        {
            "role": "user",
            "content": f"Service: {state['service']}\nSymptom: {state['symptom']}\nReported severity: {reported}",
        },
    ]
    try:
        answer = ctx.activities.llm(
            messages,
            provider=choice["provider"],
            model=choice["model"],
            temperature=0,
            max_tokens=200,
            response_format=TRIAGE_FORMAT,
        )
    except ActivityError as exc:  # recorded as failed: a replay raises it again and takes this path again
        return {**rules, "model_error": exc.message[:300]}
    parsed = triage_parse(answer["text"])
    if parsed is None:
        return {**rules, "model_error": f"the model's answer is not a usable triage: {answer['text'][:200]!r}"}
    return {"by": "model", **parsed, "provider": choice["provider"], "model": answer["model"] or choice["model"]}


# -- incident-summary-llm ------------------------------------------------------------------------------------

SUMMARY_INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["service", "symptom"],
    "additionalProperties": False,
    "properties": {
        "service": {"type": "string", "minLength": 1, "maxLength": 80, "title": "Service"},
        "symptom": {"type": "string", "minLength": 1, "maxLength": 500, "title": "Symptom"},
    },
}
SUMMARY_SYSTEM = "You write short incident summaries for the on-call engineer: two sentences, plain text."
RUNBOOK_TOOL: dict[str, Any] = {
    "name": "lookup_runbook",
    "description": "Find the runbook for an incident: what to check and what to do, in order.",
    "parameters": {
        "type": "object",
        "required": ["q"],
        "additionalProperties": False,
        "properties": {"q": {"type": "string", "description": "what to look up: the service and the symptom"}},
    },
}
RUNBOOKS: dict[str, dict[str, Any]] = {
    "latency": {
        "title": "Latency above its objective",
        "steps": [
            "check the cache hit rate; flush the cache if it dropped",
            "check the connection pool; recycle it if it is exhausted",
            "if latency is still high after 10 minutes, roll back the last deploy",
        ],
    },
    "errors": {
        "title": "Error rate above its objective",
        "steps": ["find the failing endpoint in the logs", "roll back the last deploy if the errors started with it"],
    },
    "dependency": {
        "title": "A dependency times out",
        "steps": ["check the dependency's status page", "open the circuit breaker", "page the owning team"],
    },
    "capacity": {
        "title": "Out of capacity",
        "steps": ["check disk, memory and queue depth", "rotate logs or scale out", "drain the stuck jobs"],
    },
    "other": {"title": "Unknown incident", "steps": ["gather the symptoms", "page the service owner"]},
}
NO_PROVIDER = (
    "incident-summary-llm always asks a model, and no model provider is configured here ({reason}); "
    "set CMO_LLM_PROVIDERS, or see the recorded demo run of this graph"
)


def lookup_runbook(arguments: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """The tool: the runbook of the category the query names (else the incident's symptom's)."""
    category = category_of(str(arguments.get("q") or ""))
    if category == "other":
        category = category_of(state["symptom"])
    return {"service": state["service"], "category": category, **RUNBOOKS[category]}


def _tool_result(call: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    if call.get("name") != RUNBOOK_TOOL["name"]:
        return {"error": f"there is no tool {call.get('name')!r}; the only tool is {RUNBOOK_TOOL['name']}"}
    return lookup_runbook(call.get("arguments") or {}, state)


@node("summarise", timeout=120)
def summarise(state: dict[str, Any], ctx: Any) -> Any:
    choice = model_choice(ctx)
    if not choice.get("provider"):
        raise RuntimeError(NO_PROVIDER.format(reason=choice.get("reason", "")))
    asked = {"provider": choice["provider"], "model": choice["model"], "temperature": 0, "max_tokens": 300}
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SUMMARY_SYSTEM},
        {
            "role": "user",
            "content": (
                f"Incident on {state['service']}: {state['symptom']}. Look up its runbook with the "
                "lookup_runbook tool, then summarise the incident and the next step for the on-call engineer."
            ),
        },
    ]
    answers = [ctx.activities.llm(messages, tools=[RUNBOOK_TOOL], tool_choice="auto", **asked)]
    runbooks = []
    if answers[0]["tool_calls"]:
        messages.append({"role": "assistant", "content": answers[0]["text"], "tool_calls": answers[0]["tool_calls"]})
        for call in answers[0]["tool_calls"]:
            result = _tool_result(call, state)
            runbooks.append(result)
            messages.append({"role": "tool", "tool_call_id": call["id"], "content": json.dumps(result, sort_keys=True)})
        answers.append(ctx.activities.llm(messages, tools=[RUNBOOK_TOOL], tool_choice="none", **asked))
    final = answers[-1]
    spent = {
        "model_calls": len(answers),
        "tokens": sum(a["usage"]["input_tokens"] + a["usage"]["output_tokens"] for a in answers),
        "cost_usd": round(sum(a["cost_usd"] for a in answers), 9),
    }
    summary = final["text"].strip()
    new = {**state, "summary": summary, "runbooks": runbooks, "provider": choice["provider"], "model": final["model"]}
    return ctx.result({**new, **spent}, output={"summary": summary, "tool_calls": len(runbooks), **spent})


@node("publish", timeout=10)
def publish(state: dict[str, Any], ctx: Any) -> Any:
    steps = [f"- {s}" for r in state["runbooks"] for s in r.get("steps", [])]
    text = (
        f"# Incident on {state['service']}\n\n{state['symptom']}\n\n## Summary\n\n{state['summary']}\n\n"
        + ("## Runbook\n\n" + "\n".join(steps) + "\n\n" if steps else "")
        + f"Asked {state['provider']} {state['model']}: {state['model_calls']} calls, {state['tokens']} tokens, "
        f"${state['cost_usd']:.6f}\n"
    )
    ref = ctx.activities.write_artifact(f"{ctx.trace_id}/summary.md", text)
    return ctx.result({**state, "report": ref["name"]}, output={"report": ref["name"]})


incident_summary_llm = graph(
    "incident-summary-llm",
    description=(
        "Ask a model to summarise an incident, with a runbook lookup tool it may call; publish the summary. "
        "Needs a model provider (CMO_LLM_PROVIDERS); the demo imports one recorded run of it."
    ),
    entry="summarise",
    edges=[("summarise", "publish"), ("publish", END)],
    input_schema=SUMMARY_INPUT_SCHEMA,
    max_steps=10,
)

DEMO_SUMMARY_INPUT: dict[str, Any] = {"service": "checkout", "symptom": "p99 latency over 2 s since the 14:05 deploy"}
