"""Graphs for the dashboard's browser tests: one that holds at its first step until a marker file appears, then
counts; one that fans out (composition)."""

from __future__ import annotations

import tests.graphs  # registers t_wait_for_file and t_count
import tests.graphs_composition  # noqa: F401 - registers c-static and c-signal (the composition browser test)
from runs.engine import END, graph
from runs.engine.composition import Send

graph(
    "e2e-live",
    description="Waits for a marker file, then counts to a target: a run the browser can watch as it goes.",
    entry="t_wait_for_file",
    nodes=["t_wait_for_file", "t_count"],
    edges=[("t_wait_for_file", "t_count"), ("t_count", "t_count", "again"), ("t_count", END, "done")],
    input_schema={
        "type": "object",
        "required": ["marker", "target"],
        "properties": {
            "marker": {"type": "string", "minLength": 1},
            "target": {"type": "integer", "minimum": 1, "maximum": 20},
            "max_wait": {"type": "number", "default": 30},
        },
    },
)


# -- the approvals inbox's browser test ------------------------------------------------------------

from typing import Any  # noqa: E402 - appended with the graph it serves

from runs.engine import node  # noqa: E402

CONFIG_DIFF = "--- a/.env\n+++ b/.env\n@@ -1,3 +1,3 @@\n PORT=8000\n-DEBUG=0\n+DEBUG=1\n LOG_LEVEL=info"


@node("e2e_config_change")
def e2e_config_change(state: dict[str, Any], ctx: Any) -> Any:
    """Asks to edit .env and run an eval (critical risk); whatever the decision, the run records it and ends."""
    decision = ctx.activities.request_approval(
        {"files": [".env"], "code": ["settings = eval(os.environ['PATCH'])"]}, preview=CONFIG_DIFF
    )
    return ctx.result({**state, "decision": decision})


graph(
    "e2e-config-change",
    description="Asks for approval of a change to .env shown as a diff (critical risk), then ends.",
    entry="e2e_config_change",
    edges=[("e2e_config_change", END)],
)


# -- the replay pages' browser test ----------------------------------------------------------------


@node("e2e_count_luck")
def e2e_count_luck(state: dict[str, Any], ctx: Any) -> Any:
    """Counts to 5; at step 3 (n == 4) it draws a recorded random number, so runs with other seeds diverge there."""
    n = state.get("n", 0) + 1
    new = {**state, "n": n}
    if n == 4:
        new["luck"] = ctx.activities.rand()
    return ctx.result(new, edge="again" if n < 5 else "done", output={"n": n})


graph(
    "e2e-diverge",
    description="Five counting steps; step 3 records a seeded random draw: two seeds diverge at step 3.",
    entry="e2e_count_luck",
    edges=[("e2e_count_luck", "e2e_count_luck", "again"), ("e2e_count_luck", END, "done")],
)


# -- the composition browser test: branches of two steps each, and the c-* graphs (a static fan-out, a signal) -----


@node("e2e_fan")
def e2e_fan(state: dict[str, Any], ctx: Any) -> Any:
    """One branch per topic, at most ``limit`` at once."""
    sends = [Send("e2e_draft", {"topic": t, "notes": []}) for t in state["topics"]]
    return ctx.result({**state, "notes": []}, send=sends, limit=state.get("limit"))


@node("e2e_draft")
def e2e_draft(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "draft": f"draft on {state['topic']}"})


@node("e2e_polish")
def e2e_polish(state: dict[str, Any], ctx: Any) -> Any:
    kept = {k: v for k, v in state.items() if k != "draft"}
    return ctx.result({**kept, "notes": [f"{state['draft']}, polished"]})


@node("e2e_collect")
def e2e_collect(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({"count": len(state["notes"]), "notes": state["notes"]})


graph(
    "e2e-fanout",
    description="A dynamic fan-out, one branch of two steps per topic, joined by appending their notes.",
    entry="e2e_fan",
    edges=[("e2e_fan", "e2e_draft"), ("e2e_draft", "e2e_polish"), ("e2e_polish", "e2e_collect"), ("e2e_collect", END)],
    joins={"e2e_collect": {"reducers": {"notes": "append"}}},
)
