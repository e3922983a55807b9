"""What model calls spend: a run's totals and budget, and the daily totals by graph, provider and model.

A completed call's usage is added in its record's own transaction (runs.services.run_store.put_activity):
the run's ``tokens`` and ``cost_usd`` and a row of LlmUsageDaily, so the totals never disagree with the
records. A budget (``{"tokens": N, "cost_usd": X}`` on the run, from the graph, the start request or the
schedule) is checked before a call is sent, against the spend so far plus the call's worst case: its
estimated input tokens and its ``max_tokens``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from runs.models import LlmUsageDaily, Run

MAX_DAYS = 90  # as runs.metrics: the API takes 1 to 90 days


def estimate_tokens(request: dict[str, Any]) -> int:
    """A provider-neutral estimate of a request's input tokens, for budgets and policies before anything is
    sent: about 4 characters a token, plus 4 per message for its role and framing (OpenAI's rule of thumb);
    the recorded usage is the provider's own count."""
    total = 0
    for message in request.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else message
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False, default=str)
        total += math.ceil(len(text) / 4) + 4
    if request.get("tools"):
        total += math.ceil(len(json.dumps(request["tools"], ensure_ascii=False, default=str)) / 4)
    return max(1, total)


def run_spend(run_id: int) -> dict[str, Any]:
    """The run's spend so far and its budget: {"tokens", "cost_usd", "budget"}."""
    row = dict(Run.objects.filter(pk=run_id).values("tokens", "cost_usd", "budget").first() or {})
    return {"tokens": row.get("tokens", 0), "cost_usd": row.get("cost_usd", 0.0), "budget": row.get("budget")}


def budget_refusal(spend: dict[str, Any], *, tokens: int, cost_usd: float | None) -> str:
    """Why a call of at most ``tokens`` tokens and ``cost_usd`` would overrun the run's budget, or ""."""
    budget = spend.get("budget") or {}
    limit = budget.get("tokens")
    if limit is not None and spend["tokens"] + tokens > limit:
        return (
            f"over the run's budget of {limit} tokens: {spend['tokens']} spent, and this call may take up to "
            f"{tokens} more (estimated input + max_tokens)"
        )
    limit = budget.get("cost_usd")
    if limit is not None and cost_usd is not None and spend["cost_usd"] + cost_usd > limit:
        return (
            f"over the run's budget of ${limit:.6f}: ${spend['cost_usd']:.6f} spent, and this call may cost up to "
            f"${cost_usd:.6f} more (estimated input + max_tokens)"
        )
    return ""


def output_cap(spend: dict[str, Any], *, estimated: int, price: Any) -> int | None:
    """For a call without ``max_tokens`` under a budget: the most output tokens the rest of the budget pays
    for (sent as its max_tokens, so one call cannot overrun the budget), or None without a budget."""
    budget = spend.get("budget") or {}
    caps = []
    if budget.get("tokens") is not None:
        caps.append(budget["tokens"] - spend["tokens"] - estimated)
    if budget.get("cost_usd") is not None and price is not None and price.output > 0:
        left = budget["cost_usd"] - spend["cost_usd"] - estimated * price.input / 1_000_000
        caps.append(math.floor(left * 1_000_000 / price.output))
    return max(0, min(caps)) if caps else None


def usage_add(*, run_id: int, usage: dict[str, Any]) -> None:
    """Add one completed call's usage to its run and to today's row (inside the record's transaction)."""
    tokens, cost = int(usage.get("tokens", 0)), float(usage.get("cost_usd", 0.0))
    Run.objects.filter(pk=run_id).update(tokens=F("tokens") + tokens, cost_usd=F("cost_usd") + cost)
    graph = Run.objects.filter(pk=run_id).values_list("graph__name", flat=True).first() or ""
    key = {
        "day": timezone.now().astimezone(dt.UTC).date(),
        "graph_name": graph,
        "provider": str(usage.get("provider", ""))[:100],
        "model": str(usage.get("model", ""))[:200],
    }
    add = {
        "calls": F("calls") + 1,
        "input_tokens": F("input_tokens") + int(usage.get("input_tokens", 0)),
        "output_tokens": F("output_tokens") + int(usage.get("output_tokens", 0)),
        "cached_tokens": F("cached_tokens") + int(usage.get("cached_tokens", 0)),
        "cost_usd": F("cost_usd") + cost,
    }
    if LlmUsageDaily.objects.filter(**key).update(**add):
        return
    try:
        with transaction.atomic():
            LlmUsageDaily.objects.create(
                **key,
                calls=1,
                input_tokens=int(usage.get("input_tokens", 0)),
                output_tokens=int(usage.get("output_tokens", 0)),
                cached_tokens=int(usage.get("cached_tokens", 0)),
                cost_usd=cost,
            )
    except IntegrityError:  # another worker created today's row first
        LlmUsageDaily.objects.filter(**key).update(**add)


def usage_by_day(*, days: int, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Calls, tokens and cost for each of the last ``days`` days (today included), oldest first, with each
    day's graphs. One GROUP BY over the daily rows. ValueError unless 1 <= days <= MAX_DAYS."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    today = (now or timezone.now()).astimezone(dt.UTC).date()
    start = today - dt.timedelta(days=days - 1)
    rows = (
        LlmUsageDaily.objects.filter(day__gte=start)
        .order_by()
        .values("day", "graph_name")
        .annotate(
            calls=Sum("calls"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cached_tokens=Sum("cached_tokens"),
            cost_usd=Sum("cost_usd"),
        )
    )
    by_day: dict[dt.date, list[dict[str, Any]]] = {}
    for row in rows:
        by_day.setdefault(row["day"], []).append(dict(row))
    out = []
    for i in range(days):
        day = start + dt.timedelta(days=i)
        graphs = sorted(by_day.get(day, []), key=lambda r: (-r["cost_usd"], r["graph_name"]))
        out.append(
            {
                "day": day,
                "calls": sum(r["calls"] for r in graphs),
                "input_tokens": sum(r["input_tokens"] for r in graphs),
                "output_tokens": sum(r["output_tokens"] for r in graphs),
                "cached_tokens": sum(r["cached_tokens"] for r in graphs),
                "cost_usd": round(sum(r["cost_usd"] for r in graphs), 9),
                "graphs": [
                    {k: r[k] for k in ("graph_name", "calls", "input_tokens", "output_tokens", "cost_usd")}
                    for r in graphs
                ],
            }
        )
    return out


def usage_summary(*, days: int, now: dt.datetime | None = None) -> dict[str, Any]:
    """The home page's model figures: :func:`usage_by_day` and the same days summed per graph."""
    by_day = usage_by_day(days=days, now=now)
    graphs: dict[str, dict[str, Any]] = {}
    for day in by_day:
        for g in day["graphs"]:
            total = graphs.setdefault(
                g["graph_name"],
                {"graph_name": g["graph_name"], "calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0},
            )
            for k in ("calls", "input_tokens", "output_tokens", "cost_usd"):
                total[k] += g[k]
    return {
        "days": by_day,
        "graphs": sorted(graphs.values(), key=lambda g: (-g["cost_usd"], g["graph_name"])),
        "calls": sum(d["calls"] for d in by_day),
        "tokens": sum(d["input_tokens"] + d["output_tokens"] for d in by_day),
        "cost_usd": sum(d["cost_usd"] for d in by_day),
    }


def usage_totals() -> list[dict[str, Any]]:
    """All-time totals by graph, provider and model (the /metrics counters; the rows outlive retention)."""
    return [
        dict(row)
        for row in LlmUsageDaily.objects.order_by()
        .values("graph_name", "provider", "model")
        .annotate(
            calls=Sum("calls"),
            input_tokens=Sum("input_tokens"),
            output_tokens=Sum("output_tokens"),
            cached_tokens=Sum("cached_tokens"),
            cost_usd=Sum("cost_usd"),
        )
        .order_by("graph_name", "provider", "model")
    ]
