"""Nodes and graphs that call models (runs.llm), for the LLM activity tests."""

from __future__ import annotations

from typing import Any

from runs.engine import END, graph, node

# Tests flip these to make a node ask differently on re-execution (a changed prompt).
LLM_KNOBS: dict[str, Any] = {"suffix": ""}


def _call(state: dict[str, Any], ctx: Any, prompt: str) -> dict[str, Any]:
    names = ("provider", "model", "tools", "tool_choice", "max_tokens", "stream", "extra")
    options = {k: state[k] for k in names if k in state}
    return dict(ctx.activities.llm([{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}],
                                   **options))  # fmt: skip


@node("t_llm_ask")
def t_llm_ask(state: dict[str, Any], ctx: Any) -> Any:
    """One model call; the answer's text, tool calls and cost go into the state."""
    answer = _call(state, ctx, state.get("prompt", "hello") + LLM_KNOBS["suffix"])
    return ctx.result({**state, "text": answer["text"], "tool_calls": answer["tool_calls"], "cost": answer["cost_usd"]})


@node("t_llm_twice")
def t_llm_twice(state: dict[str, Any], ctx: Any) -> Any:
    """Two model calls in one step (a budget may refuse the second)."""
    first = _call(state, ctx, state.get("prompt", "hello"))
    second = _call(state, ctx, first["text"])
    return ctx.result({**state, "texts": [first["text"], second["text"]]})


graph("t-llm", entry="t_llm_ask", edges=[("t_llm_ask", END)])
graph("t-llm-twice", entry="t_llm_twice", edges=[("t_llm_twice", END)])
graph("t-llm-budget", entry="t_llm_twice", edges=[("t_llm_twice", END)], budget={"tokens": 60})
