"""One chat completion through the official client of a provider's kind, in one request/response shape.

The request a node gives (and the record keeps) is OpenAI's chat format, which every OpenAI-compatible
server speaks: ``messages`` of system/user/assistant/tool roles (an assistant's ``tool_calls`` as
``{"id", "name", "arguments": {...}}``), ``tools`` as ``{"name", "description", "parameters"}``,
``tool_choice`` ("auto", "none", "required" or ``{"name": ...}``), ``temperature``, ``max_tokens``,
``response_format`` (``{"type": "json_schema", "json_schema": {"name", "schema"}}``) and ``extra``
(passed as the provider's own body fields). For Anthropic it is translated to the Messages API: system
messages become ``system``, tool results ``tool_result`` blocks, tools ``input_schema``, a JSON schema
``output_config.format``.

The answer: ``text``, ``tool_calls`` (arguments parsed; a call whose arguments are not JSON fails the
activity), ``finish_reason`` (stop, tool_calls, length, or the provider's own), ``usage`` (input tokens
including cached ones, output, cached), ``latency_ms``, ``ttft_ms`` (streamed calls) and the model the
provider reports. Retries of a 429 (after its Retry-After) and of 5xx are the client's own
(``max_retries``); the Idempotency-Key header carries the activity's key, so a re-issued call after a
crash can be recognised by a server that honours it.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import anthropic
import openai

from runs.engine.errors import ActivityError
from runs.llm.providers import KIND, Provider

OnText = Callable[[str], None]
DEFAULT_ANTHROPIC_MAX_TOKENS = 1024
_FINISH = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls", "max_tokens": "length"}

_clients: dict[tuple[str, str, str | None, str], Any] = {}
_clients_lock = threading.Lock()


def _client(provider: Provider, api_key: str) -> Any:
    """One client per provider and key (each holds a connection pool); the key only as its hash."""
    ident = (provider.kind, provider.name, provider.base_url, hashlib.sha256(api_key.encode()).hexdigest())
    with _clients_lock:
        client = _clients.get(ident)
        if client is None:
            cls = openai.OpenAI if provider.kind == "openai" else anthropic.Anthropic
            client = cls(
                api_key=api_key, base_url=provider.base_url, max_retries=provider.max_retries, timeout=provider.timeout
            )
            _clients[ident] = client
        return client


def complete(
    provider: Provider, *, api_key: str, request: dict[str, Any], idempotency_key: str, on_text: OnText | None = None
) -> dict[str, Any]:
    """Send ``request`` and return the answer (see the module docstring); ActivityError on any failure."""
    client = _client(provider, api_key)
    headers = {"Idempotency-Key": idempotency_key}
    started = time.perf_counter()
    try:
        if provider.kind == "openai":
            answer = _openai(client, request, headers, on_text, started)
        else:
            answer = _anthropic(client, request, headers, on_text, started)
    except (openai.APIStatusError, anthropic.APIStatusError) as exc:
        raise ActivityError(KIND, f"provider {provider.name!r} answered {exc.status_code}: {_message(exc)}") from None
    except (openai.APITimeoutError, anthropic.APITimeoutError):
        raise ActivityError(KIND, f"provider {provider.name!r} did not answer within {provider.timeout:g} s") from None
    except (openai.APIConnectionError, anthropic.APIConnectionError) as exc:
        raise ActivityError(KIND, f"provider {provider.name!r} could not be reached: {exc}") from None
    except (openai.APIError, anthropic.APIError) as exc:
        raise ActivityError(KIND, f"provider {provider.name!r} failed: {exc}") from None
    except ActivityError:
        raise
    except Exception as exc:  # noqa: BLE001 - e.g. anthropic lets a stream's read timeout through unwrapped
        raise ActivityError(KIND, f"provider {provider.name!r} failed: {type(exc).__name__}: {exc}") from None
    answer["latency_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return answer


def _message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return f"{error.get('type') or 'error'}: {error['message']}"
    return str(getattr(exc, "message", exc))


def _arguments(name: str, raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        parsed = json.loads(raw or "{}")
    except (TypeError, ValueError) as exc:
        raise ActivityError(
            KIND, f"the model's call of tool {name!r} has arguments that are not JSON ({exc}): {str(raw)[:200]!r}"
        ) from None
    if not isinstance(parsed, dict):
        raise ActivityError(KIND, f"the model's call of tool {name!r} has arguments that are not an object: {raw!r}")
    return parsed


def _tools(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Tools as {"name", "description", "parameters"}, whether given in that shape or OpenAI's."""
    out = []
    for tool in tools or []:
        fn = tool.get("function", tool) if tool.get("type") == "function" else tool
        out.append(
            {
                "name": fn["name"],
                "description": fn.get("description", ""),
                "parameters": fn.get("parameters") or {"type": "object", "properties": {}},
            }
        )
    return out


# -- OpenAI and compatible servers ------------------------------------------------------------------------


def _openai_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for message in messages:
        calls = message.get("tool_calls")
        if message.get("role") == "assistant" and calls:
            message = {
                **message,
                "tool_calls": [
                    call
                    if "function" in call
                    else {
                        "id": call["id"],
                        "type": "function",
                        "function": {"name": call["name"], "arguments": json.dumps(call.get("arguments") or {})},
                    }
                    for call in calls
                ],
            }
        out.append(message)
    return out


def _openai_body(request: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"model": request["model"], "messages": _openai_messages(request["messages"])}
    tools = _tools(request.get("tools"))
    if tools:
        body["tools"] = [{"type": "function", "function": tool} for tool in tools]
    choice = request.get("tool_choice")
    if isinstance(choice, dict):
        body["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif choice is not None:
        body["tool_choice"] = choice
    for field in ("temperature", "max_tokens", "response_format"):
        if request.get(field) is not None:
            body[field] = request[field]
    return body


def _openai(
    client: openai.OpenAI, request: dict[str, Any], headers: dict[str, str], on_text: OnText | None, started: float
) -> dict[str, Any]:
    body = _openai_body(request)
    extra = request.get("extra") or None
    if not request.get("stream"):
        resp = client.chat.completions.create(**body, extra_headers=headers, extra_body=extra)
        if not resp.choices:
            raise ActivityError(KIND, "the provider's answer has no choices")
        choice = resp.choices[0]
        calls = [
            {"id": c.id, "name": c.function.name, "arguments": _arguments(c.function.name, c.function.arguments)}
            for c in (choice.message.tool_calls or [])
            if getattr(c, "function", None) is not None
        ]
        return {
            "model": resp.model,
            "text": choice.message.content or "",
            "tool_calls": calls,
            "finish_reason": choice.finish_reason or "",
            "usage": _openai_usage(resp.usage),
            "ttft_ms": None,
            "id": resp.id,
        }
    text: list[str] = []
    pieces: dict[int, dict[str, Any]] = {}
    finish, model, ident, usage, ttft = "", request["model"], "", None, None
    stream = client.chat.completions.create(
        **body, stream=True, stream_options={"include_usage": True}, extra_headers=headers, extra_body=extra
    )
    with stream:
        for chunk in stream:
            model, ident = chunk.model or model, chunk.id or ident
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices[:1]:
                delta = choice.delta
                if delta.content:
                    if ttft is None:
                        ttft = (time.perf_counter() - started) * 1000
                    text.append(delta.content)
                    if on_text is not None:
                        on_text("".join(text))
                for call in delta.tool_calls or []:
                    if ttft is None:
                        ttft = (time.perf_counter() - started) * 1000
                    piece = pieces.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                    piece["id"] = call.id or piece["id"]
                    if call.function is not None:
                        piece["name"] += call.function.name or ""
                        piece["arguments"] += call.function.arguments or ""
                if choice.finish_reason:
                    finish = choice.finish_reason
    calls = [
        {"id": p["id"], "name": p["name"], "arguments": _arguments(p["name"], p["arguments"])}
        for _, p in sorted(pieces.items())
    ]
    return {
        "model": model,
        "text": "".join(text),
        "tool_calls": calls,
        "finish_reason": finish,
        "usage": _openai_usage(usage),
        "ttft_ms": round(ttft, 3) if ttft is not None else None,
        "id": ident,
    }


def _openai_usage(usage: Any) -> dict[str, int]:
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0, "cached_tokens": 0, "reported": False}
    details = getattr(usage, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    return {
        "input_tokens": int(usage.prompt_tokens or 0),
        "output_tokens": int(usage.completion_tokens or 0),
        "cached_tokens": cached,
        "reported": True,
    }


# -- Anthropic --------------------------------------------------------------------------------------------


def _anthropic_body(request: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Messages API body, and the fields the client takes only as extra body (temperature)."""
    system: list[str] = []
    messages: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if messages and messages[-1]["role"] == role:  # the API wants user and assistant turns in alternation
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for message in request["messages"]:
        role, content = message.get("role"), message.get("content")
        blocks: list[dict[str, Any]] = (
            [{"type": "text", "text": content}] if isinstance(content, str) and content else []
        )
        if isinstance(content, list):
            blocks = list(content)
        if role == "system":
            system.append(content if isinstance(content, str) else " ".join(b.get("text", "") for b in blocks))
        elif role == "tool":
            text = content if isinstance(content, str) else json.dumps(content)
            add("user", [{"type": "tool_result", "tool_use_id": message.get("tool_call_id", ""), "content": text}])
        elif role == "assistant":
            for call in message.get("tool_calls") or []:
                fn = call.get("function")
                name = fn["name"] if fn else call["name"]
                args = _arguments(name, fn["arguments"]) if fn else (call.get("arguments") or {})
                blocks.append({"type": "tool_use", "id": call["id"], "name": name, "input": dict(args)})
            add("assistant", blocks)
        else:
            add("user", blocks)
    body: dict[str, Any] = {
        "model": request["model"],
        "messages": messages,
        "max_tokens": request.get("max_tokens") or DEFAULT_ANTHROPIC_MAX_TOKENS,
    }
    if system:
        body["system"] = "\n\n".join(system)
    tools = _tools(request.get("tools"))
    if tools:
        body["tools"] = [
            {"name": t["name"], "description": t["description"], "input_schema": t["parameters"]} for t in tools
        ]
    choice = request.get("tool_choice")
    if choice is not None:
        body["tool_choice"] = (
            {"type": "tool", "name": choice["name"]}
            if isinstance(choice, dict)
            else {"type": {"required": "any"}.get(choice, choice)}
        )
    response_format = request.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    extra = dict(request.get("extra") or {})
    if request.get("temperature") is not None:
        extra["temperature"] = request["temperature"]
    return body, extra


def _anthropic(
    client: anthropic.Anthropic,
    request: dict[str, Any],
    headers: dict[str, str],
    on_text: OnText | None,
    started: float,
) -> dict[str, Any]:
    body, extra = _anthropic_body(request)
    ttft = None
    if not request.get("stream"):
        message = client.messages.create(**body, extra_headers=headers, extra_body=extra or None)
    else:
        text: list[str] = []
        with client.messages.stream(**body, extra_headers=headers, extra_body=extra or None) as stream:
            for event in stream:
                if event.type == "content_block_start" and ttft is None:
                    ttft = (time.perf_counter() - started) * 1000
                if event.type == "text":
                    if ttft is None:
                        ttft = (time.perf_counter() - started) * 1000
                    text.append(event.text)
                    if on_text is not None:
                        on_text("".join(text))
            message = stream.get_final_message()
    parts = [block.text for block in message.content if block.type == "text"]
    calls = [
        {"id": block.id, "name": block.name, "arguments": _arguments(block.name, block.input)}
        for block in message.content
        if block.type == "tool_use"
    ]
    usage = message.usage
    cached = int(getattr(usage, "cache_read_input_tokens", 0) or 0)
    created = int(getattr(usage, "cache_creation_input_tokens", 0) or 0)
    reason = message.stop_reason or ""
    return {
        "model": message.model,
        "text": "".join(parts),
        "tool_calls": calls,
        "finish_reason": _FINISH.get(reason, reason),
        # Anthropic counts cache reads and writes apart from input_tokens; here input includes them.
        "usage": {
            "input_tokens": int(usage.input_tokens or 0) + cached + created,
            "output_tokens": int(usage.output_tokens or 0),
            "cached_tokens": cached,
            "reported": True,
        },
        "ttft_ms": round(ttft, 3) if ttft is not None else None,
        "id": message.id,
    }
