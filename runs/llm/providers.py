"""The model providers a deployment configures, and what their calls cost.

``CMO_LLM_PROVIDERS`` (JSON in the environment, or a dict in settings) maps a name to::

    {"kind": "openai" | "anthropic",
     "base_url": "http://127.0.0.1:11434/v1",      # optional: the client's default otherwise
     "api_key_secret": "openai",                     # read with ctx.secret on the worker, never recorded
     "default_model": "gpt-4o-mini",
     "max_retries": 2, "timeout": 60,               # the client's own retry (429 retry-after, 5xx)
     "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.60, "cached": 0.075}, "*": {...}}}

Prices are USD per million tokens; ``cached`` is the price of input tokens served from the provider's
cache (the input price when absent); ``"*"`` prices every model without its own row. A model without a
price costs 0 and its record says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from runs.engine.errors import ActivityError

KIND = "llm"
KINDS = ("openai", "anthropic")


@dataclass(frozen=True)
class Price:
    input: float
    output: float
    cached: float


@dataclass(frozen=True)
class Provider:
    name: str
    kind: str
    base_url: str | None
    api_key_secret: str
    default_model: str
    max_retries: int = 2
    timeout: float = 60.0
    prices: dict[str, Price] = field(default_factory=dict)

    def price(self, model: str) -> Price | None:
        return self.prices.get(model) or self.prices.get("*")

    def cost(self, model: str, *, input_tokens: int, output_tokens: int, cached_tokens: int) -> float | None:
        """USD for one call; None when the model has no price. Cached tokens are part of the input tokens."""
        price = self.price(model)
        if price is None:
            return None
        fresh = max(0, input_tokens - cached_tokens)
        total = fresh * price.input + cached_tokens * price.cached + output_tokens * price.output
        return round(total / 1_000_000, 9)


MAX_FIGURE = 10**15  # tokens or dollars no call reaches: a larger figure in an imported record is not trusted


def figure(value: Any) -> float:
    """A recorded usage figure, or 0 when it is not a finite number in [0, MAX_FIGURE] (an imported bundle can
    hold anything, and the pages and totals read it)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return 0
    return value if 0 <= value <= MAX_FIGURE else 0


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a number >= 0, not {value!r}")
    return float(value)


def _prices(name: str, raw: Any) -> dict[str, Price]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError(f"provider {name!r}: prices must map a model to its prices per million tokens")
    prices = {}
    for model, row in raw.items():
        if not isinstance(row, dict):
            raise ValueError(f"provider {name!r}: the prices of {model!r} must be an object")
        inp = _number(row.get("input", 0), f"provider {name!r}: {model} input price")
        out = _number(row.get("output", 0), f"provider {name!r}: {model} output price")
        cached = _number(row.get("cached", inp), f"provider {name!r}: {model} cached price")
        prices[str(model)] = Price(input=inp, output=out, cached=cached)
    return prices


def provider_from(name: str, raw: Any) -> Provider:
    """One provider from its configuration; ValueError naming what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError(f"provider {name!r} must be an object")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ValueError(f"provider {name!r}: kind must be one of {', '.join(KINDS)}, not {kind!r}")
    secret = raw.get("api_key_secret")
    if not isinstance(secret, str) or not secret:
        raise ValueError(f"provider {name!r}: api_key_secret must name the secret that holds its API key")
    model = raw.get("default_model", "")
    if not isinstance(model, str):
        raise ValueError(f"provider {name!r}: default_model must be a string")
    base_url = raw.get("base_url")
    if base_url is not None and not isinstance(base_url, str):
        raise ValueError(f"provider {name!r}: base_url must be a string")
    retries = raw.get("max_retries", 2)
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
        raise ValueError(f"provider {name!r}: max_retries must be an integer from 0 to 10")
    return Provider(
        name=name,
        kind=kind,
        base_url=base_url or None,
        api_key_secret=secret,
        default_model=model,
        max_retries=retries,
        timeout=_number(raw.get("timeout", 60), f"provider {name!r}: timeout") or 60.0,
        prices=_prices(name, raw.get("prices")),
    )


def providers() -> dict[str, Provider]:
    """Every configured provider; ValueError when one is misconfigured (``check`` reports it at start)."""
    raw = getattr(settings, "CMO_LLM_PROVIDERS", {}) or {}
    return {str(name): provider_from(str(name), config) for name, config in raw.items()}


def provider_get(name: str) -> Provider:
    """Provider ``name``, or an ActivityError naming the configured ones (recorded as the call's failure)."""
    try:
        configured = providers()
    except ValueError as exc:
        raise ActivityError(KIND, f"CMO_LLM_PROVIDERS is misconfigured: {exc}") from None
    provider = configured.get(name)
    if provider is None:
        names = ", ".join(sorted(configured)) or "(none: set CMO_LLM_PROVIDERS)"
        raise ActivityError(KIND, f"unknown model provider {name!r}; configured: {names}")
    return provider


def provider_configured() -> str | None:
    """The first configured provider's name (the demo's choice), or None."""
    try:
        names = sorted(providers())
    except ValueError:
        return None
    return names[0] if names else None
