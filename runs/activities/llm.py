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
from runs.llm.providers import KIND, Provider, figure, provider_get, providers
from runs.llm.usage import budget_refusal, estimate_tokens, output_cap, run_spend

STREAM_INTERVAL = 0.05  # seconds between two live messages of one streamed call
ROLES = ("system", "user", "assistant", "tool")
# Body fields ``extra`` may not set: each is set from the call's own arguments, which the policies and the
# budget read (an extra "model" would send another model than the one the policy allowed).
RESERVED_EXTRA = frozenset(
    {
        "model", "messages", "tools", "tool_choice", "temperature", "max_tokens", "max_completion_tokens",
        "response_format", "stream", "stream_options", "system", "output_config", "functions", "function_call", "n",
    }
)  # fmt: skip


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
    if extra is not None and not isinstance(extra, dict):
        raise ValueError("llm: extra must be an object of the provider's own body fields")
    reserved = sorted(RESERVED_EXTRA & set(extra or {}))
    if reserved:
        raise ValueError(f"llm: extra may not set {', '.join(reserved)}: pass them as the call's own arguments")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise ValueError("llm: max_tokens must be a positive integer")
    name = _provider_name(provider)
    try:
        config: Provider | None = provider_get(name)
    except ActivityError:
        config = None  # recorded as the call's failure by the effect, with the configured names
    chosen = model or (config.default_model if config else "")
    # The provider and model as the node gave them: the defaults this worker's settings fill in are part of the
    # answer, so a verify or replay on a machine configured otherwise (or not at all) sees the same request.
    request: dict[str, Any] = {
        "provider": provider,
        "model": model,
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
        spend_now = run_spend(ctx.run.run_id)
        price = chosen_provider.price(chosen)
        refusal = budget_refusal(
            spend_now,
            tokens=estimated + (max_tokens or 0),
            cost_usd=_worst_case_cost(chosen_provider, chosen, estimated, max_tokens),
        )
        if refusal:
            raise ActivityError(KIND, f"refused before sending: {refusal}")
        sent = {**request, "model": chosen, "stream": stream}
        cap = None if max_tokens is not None else output_cap(spend_now, estimated=estimated, price=price)
        if cap is not None:
            if cap < 1:
                raise ActivityError(KIND, "refused before sending: the run's budget has no tokens left for an answer")
            sent["max_tokens"] = cap  # the rest of the budget bounds the answer; the record says so
        on_text = _LiveText(ctx.run.run_id, ctx.step, seq) if stream else None
        answer = clients.complete(chosen_provider, api_key=api_key, request=sent, idempotency_key=key, on_text=on_text)
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
            "model": answer["model"] or chosen,
            "provider": name,
            "stream": stream,
            "cost_usd": cost or 0.0,
            "priced": cost is not None,
            **({"max_tokens_from_budget": cap} if cap is not None else {}),
        }

    return Call(request=request, effect=effect, facts=facts)


def usage_of(response: Any) -> dict[str, Any] | None:
    """What a recorded answer spent, for the run's totals and the daily rows."""
    if not isinstance(response, dict) or not isinstance(response.get("usage"), dict):
        return None
    usage = response["usage"]
    inp, out = int(figure(usage.get("input_tokens"))), int(figure(usage.get("output_tokens")))
    return {
        "tokens": inp + out,
        "cost_usd": float(figure(response.get("cost_usd"))),
        "input_tokens": inp,
        "output_tokens": out,
        "cached_tokens": int(figure(usage.get("cached_tokens"))),
        "provider": str(response.get("provider") or "")[:100],
        "model": str(response.get("model") or "")[:200],
    }


KINDS = [ActivityKind(name=KIND, method="llm", build=_build, answer=dict, usage=usage_of)]
