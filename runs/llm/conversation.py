"""A recorded model call as the pages show it: the messages as a chat, the answer, its usage and cost.

Built from the activity's record alone (its redacted request and response), so the run page, the
compare page and an imported run show the same thing, with or without the provider configured here.
"""

from __future__ import annotations

import json
from typing import Any

from runs.llm.providers import KIND, figure


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [b.get("text", "") if isinstance(b, dict) else str(b) for b in content]
        return "\n".join(p for p in parts if p)
    return json.dumps(content, ensure_ascii=False, indent=1)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _tool_name(tool: Any) -> str:
    if not isinstance(tool, dict):
        return str(tool)
    fn = tool.get("function")
    return str(tool.get("name") or (fn.get("name", "") if isinstance(fn, dict) else ""))


def _calls(calls: Any) -> list[dict[str, Any]]:
    out = []
    for call in _list(calls):
        if not isinstance(call, dict):
            continue
        fn = call.get("function") if isinstance(call.get("function"), dict) else None
        out.append(
            {
                "id": str(call.get("id", "")),
                "name": str(fn["name"] if fn else call.get("name", "")),
                "arguments": fn.get("arguments") if fn else call.get("arguments"),
            }
        )
    return out


def conversation_of(activity: dict[str, Any]) -> dict[str, Any] | None:
    """The chat view of one activity (runs.selectors.activity_view shape, response resolved), or None when
    it is not a model call."""
    if activity.get("type") != KIND or not isinstance(activity.get("request"), dict):
        return None
    request = activity["request"]
    messages = [
        {
            "role": str(m.get("role", "")),
            "text": _text(m.get("content")),
            "tool_calls": _calls(m.get("tool_calls")),
            "tool_call_id": str(m.get("tool_call_id", "") or ""),
        }
        for m in _list(request.get("messages"))
        if isinstance(m, dict)
    ]
    response = activity.get("response") if activity.get("status") == "completed" else None
    answer = None
    usage: dict[str, Any] = {}
    if isinstance(response, dict):
        answer = {
            "text": str(response.get("text", "")),
            "tool_calls": _calls(response.get("tool_calls")),
            "finish_reason": str(response.get("finish_reason", "")),
        }
        raw_usage = response.get("usage")
        usage = raw_usage if isinstance(raw_usage, dict) else {}
    settings = {k: request.get(k) for k in ("temperature", "max_tokens", "tool_choice") if request.get(k) is not None}
    return {
        "provider": str((response or {}).get("provider") or request.get("provider") or ""),
        "model": str((response or {}).get("model") or request.get("model") or ""),
        "messages": messages,
        "tools": [_tool_name(t) for t in _list(request.get("tools"))],
        "settings": settings,
        "answer": answer,
        "error": activity.get("error", "") if activity.get("status") == "failed" else "",
        "pending": activity.get("status") == "pending",
        "usage": {k: int(figure(usage.get(k))) for k in ("input_tokens", "output_tokens", "cached_tokens")},
        "cost_usd": float(figure((response or {}).get("cost_usd"))),
        "priced": bool((response or {}).get("priced", False)),
        "latency_ms": (response or {}).get("latency_ms"),
        "ttft_ms": (response or {}).get("ttft_ms"),
        "streamed": bool((response or {}).get("stream", False)),
    }


def step_usage(conversations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A step's model calls in all: calls, tokens and cost (None when it made none)."""
    if not conversations:
        return None
    tokens = sum(c["usage"]["input_tokens"] + c["usage"]["output_tokens"] for c in conversations)
    return {"calls": len(conversations), "tokens": tokens, "cost_usd": sum(c["cost_usd"] for c in conversations)}
