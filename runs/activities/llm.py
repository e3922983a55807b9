"""``ctx.activities.llm(messages, *, provider=None, model=None, ...)``: one chat completion, recorded.

The call is checked before anything leaves the worker: the provider must be configured, its key must
be on the worker (``ctx.secret``; never in the record), the Rego policies see ``input.llm`` (provider,
model, estimated input tokens, ``max_tokens``, the run's spend and budget), and the run's budget must
hold the call's worst case. Then the official client sends it (runs.llm.clients); with ``stream=True``
the text so far reaches the run page live (a ``run.llm`` message at most every 50 ms) while the record is
written once, when the answer is complete, before the node sees it. A worker that dies mid-call leaves
no record, so the resumed step sends the call again, with the same Idempotency-Key.

The node gets the recorded answer: ``{"text", "tool_calls": [{"id", "name", "arguments"}],
"finish_reason", "usage": {"input_tokens", "output_tokens", "cached_tokens"}, "cost_usd", "model",
"provider", "latency_ms", "ttft_ms"}``. A replay, a verify and a fork's copied steps return it and
send nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings

from cmo_site.shared import live
from runs.engine.boundary import activity_region
from runs.engine.errors import ActivityError
from runs.engine.plugins import ActivityKind, Call
from runs.engine.redaction import redact_text
from runs.engine.secrets import SecretMissing, secret_get
from runs.llm import clients
from runs.llm.providers import KIND, Provider, provider_get, providers
from runs.llm.usage import budget_refusal, estimate_tokens, run_spend

STREAM_INTERVAL = 0.05  # seconds between two live messages of one streamed call
ROLES = ("system", "user", "assistant", "tool")


def _provider_name(provider: str | None) -> str:
    if provider:
        return provider
    default = getattr(settings, "CMO_LLM_DEFAULT_PROVIDER", "")
    if default:
        return str(default)
    try:
        configured = sorted(providers())
    except ValueError:
        configured = []
    return configured[0] if len(configured) == 1 else ""


def _messages(messages: Any) -> list[dict[str, Any]]:
    """The messages as given, checked: a list of {"role", "content"} objects (ValueError fails the step)."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    if not isinstance(messages, list) or not messages:
        raise ValueError("llm: messages must be a non-empty list of {'role', 'content'} objects (or a string)")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise ValueError(f"llm: message {i} must be an object whose role is one of {', '.join(ROLES)}")
    return list(messages)


class _LiveText:
    """Sends a streamed call's text so far to the run's page, at most every STREAM_INTERVAL seconds."""

    def __init__(self, run_id: int, step: int, seq: int):
        self.run_id, self.step, self.seq = run_id, step, seq
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self, text: str, *, done: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if not done and now - self._last < STREAM_INTERVAL:
                return
            self._last = now
        live.group_send_now(
            live.run_group(self.run_id),
            live.llm_message(run_id=self.run_id, step=self.step, seq=self.seq, text=redact_text(text), done=done),
        )


def _worst_case_cost(provider: Provider | None, model: str, estimated: int, max_tokens: int | None) -> float | None:
    if provider is None:
        return None
    return provider.cost(model, input_tokens=estimated, output_tokens=max_tokens or 0, cached_tokens=0)


def _build(
    ctx: Any,
    seq: int,
    messages: Any,
    *,
    provider: str | None = None,
    model: str | None = None,
    tools: list[dict[str, Any]] | None = None,
    tool_choice: str | dict[str, Any] | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    response_format: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    stream: bool = False,
) -> Call:
    name = _provider_name(provider)
    try:
        config: Provider | None = provider_get(name)
    except ActivityError:
        config = None  # recorded as the call's failure by the effect, with the configured names
    chosen = model or (config.default_model if config else "")
    request: dict[str, Any] = {
        "provider": name,
        "model": chosen,
        "messages": _messages(messages),
        "tools": tools or [],
        "tool_choice": tool_choice,
        "temperature": temperature,
        "max_tokens": max_tokens,
        "response_format": response_format,
        "extra": extra or {},
    }
    estimated = estimate_tokens(request)
    with activity_region():  # the engine's own read, in the node's thread
        spend = run_spend(ctx.run.run_id)
    facts = {
        "llm": {
            "provider": name,
            "model": chosen,
            "estimated_input_tokens": estimated,
            "max_tokens": max_tokens or 0,
            "spend": {"tokens": spend["tokens"], "cost_usd": spend["cost_usd"]},
            "budget": spend["budget"] or {},
        }
    }
    key = f"{ctx.run.trace_id}:{ctx.step}:{seq}"

    def effect() -> dict[str, Any]:
        chosen_provider = provider_get(name)
        if not chosen:
            raise ActivityError(KIND, f"provider {name!r} has no default_model: pass model=...")
        try:
            api_key = secret_get(chosen_provider.api_key_secret)
        except SecretMissing as exc:
            raise ActivityError(KIND, f"provider {name!r} has no API key on this worker: {exc}") from None
        # The spend again, now: another call of this run may have been recorded since the policy looked.
        refusal = budget_refusal(
            run_spend(ctx.run.run_id),
            tokens=estimated + (max_tokens or 0),
            cost_usd=_worst_case_cost(chosen_provider, chosen, estimated, max_tokens),
        )
        if refusal:
            raise ActivityError(KIND, f"refused before sending: {refusal}")
        on_text = _LiveText(ctx.run.run_id, ctx.step, seq) if stream else None
        answer = clients.complete(
            chosen_provider,
            api_key=api_key,
            request={**request, "stream": stream},
            idempotency_key=key,
            on_text=on_text,
        )
        if on_text is not None:
            on_text(answer["text"], done=True)
        usage = answer["usage"]
        cost = chosen_provider.cost(
            answer["model"] or chosen,
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            cached_tokens=usage["cached_tokens"],
        )
        if cost is None and answer["model"] != chosen:
            cost = chosen_provider.cost(
                chosen,
                input_tokens=usage["input_tokens"],
                output_tokens=usage["output_tokens"],
                cached_tokens=usage["cached_tokens"],
            )
        return {
            **answer,
            "provider": name,
            "stream": stream,
            "cost_usd": cost or 0.0,
            "priced": cost is not None,
        }

    return Call(request=request, effect=effect, facts=facts)


def usage_of(response: Any) -> dict[str, Any] | None:
    """What a recorded answer spent, for the run's totals and the daily rows."""
    if not isinstance(response, dict) or not isinstance(response.get("usage"), dict):
        return None
    usage = response["usage"]
    inp, out = int(usage.get("input_tokens") or 0), int(usage.get("output_tokens") or 0)
    return {
        "tokens": inp + out,
        "cost_usd": float(response.get("cost_usd") or 0.0),
        "input_tokens": inp,
        "output_tokens": out,
        "cached_tokens": int(usage.get("cached_tokens") or 0),
        "provider": str(response.get("provider") or ""),
        "model": str(response.get("model") or ""),
    }


KINDS = [ActivityKind(name=KIND, method="llm", build=_build, answer=dict, usage=usage_of)]
