"""Graphs for replay tests: recorded activities of several kinds, and knobs that change behaviour."""

from __future__ import annotations

import random
from typing import Any

from runs.engine import END, graph, node

# Tests flip these to make a re-execution behave differently without changing the code.
REPLAY_KNOBS: dict[str, Any] = {"dice_high": 6, "unrecorded_random": False}


@node("r_start")
def r_start(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "started": ctx.activities.now().isoformat(), "luck": ctx.activities.rand()})


@node("r_files")
def r_files(state: dict[str, Any], ctx: Any) -> Any:
    ctx.activities.write_artifact(f"{ctx.trace_id}/notes.txt", f"notes for {state['topic']}")
    text = ctx.activities.read_artifact(f"{ctx.trace_id}/notes.txt")
    return ctx.result({**state, "notes": text})


@node("r_dice")
def r_dice(state: dict[str, Any], ctx: Any) -> Any:
    roll = ctx.activities.randint(1, REPLAY_KNOBS["dice_high"])
    if REPLAY_KNOBS["unrecorded_random"]:
        roll += random.random()  # the point: a source of randomness that is not recorded
    rolls = [*state.get("rolls", []), roll]
    return ctx.result({**state, "rolls": rolls}, edge="again" if len(rolls) < state.get("rounds", 2) else "done")


@node("r_end")
def r_end(state: dict[str, Any], ctx: Any) -> Any:
    return ctx.result({**state, "total": sum(state["rolls"])}, output={"total": sum(state["rolls"])})


graph(
    "r-pipeline",
    entry="r_start",
    edges=[
        ("r_start", "r_files"),
        ("r_files", "r_dice"),
        ("r_dice", "r_dice", "again"),
        ("r_dice", "r_end", "done"),
        ("r_end", END),
    ],
    input_schema={"type": "object", "required": ["topic"], "properties": {"topic": {"type": "string"}}},
)
