"""A recorded model call as the pages show it: the messages as a chat, the answer, its usage and cost.

Built from the activity's record alone (its redacted request and response), so the run page, the
compare page and an imported run show the same thing, with or without the provider configured here.
"""

from __future__ import annotations

import json
from typing import Any

from runs.llm.providers import KIND


def _text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [b.get("text", "") if isinstance(b, dict) else str(b) for b in content]
        return "\n".join(p for p in parts if p)
    return json.dumps(content, ensure_ascii=False, indent=1)


def _calls(calls: Any) -> list[dict[str, Any]]:
    out = []
    for call in calls or []:
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
        for m in request.get("messages") or []
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
        "provider": str(request.get("provider", "")),
        "model": str((response or {}).get("model") or request.get("model", "")),
        "messages": messages,
        "tools": [str(t.get("name") or (t.get("function") or {}).get("name", "")) for t in request.get("tools") or []],
        "settings": settings,
        "answer": answer,
        "error": activity.get("error", "") if activity.get("status") == "failed" else "",
        "pending": activity.get("status") == "pending",
        "usage": {
            "input_tokens": int(usage.get("input_tokens") or 0),
            "output_tokens": int(usage.get("output_tokens") or 0),
            "cached_tokens": int(usage.get("cached_tokens") or 0),
        },
        "cost_usd": float((response or {}).get("cost_usd") or 0.0),
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
