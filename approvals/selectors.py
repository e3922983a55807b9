"""Reads the approvals inbox and the navigation badge share."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.utils import timezone

from approvals import risk
from approvals.models import ApprovalRequest
from runs.engine import statemachine as sm

_RISK_ORDER = Case(
    *[When(level=level, then=Value(rank)) for level, rank in risk.LEVEL_RANK.items()],
    default=Value(0),
    output_field=IntegerField(),
)


def _waiting() -> QuerySet[ApprovalRequest]:
    """Pending requests of runs that can still use an answer (an aborted or timed-out run cannot)."""
    return ApprovalRequest.objects.filter(status=ApprovalRequest.PENDING).exclude(run__status__in=sm.TERMINAL)


def pending_count() -> int:
    """How many requests wait for a decision (the badge)."""
    return _waiting().count()


def expiring_count(*, within_seconds: float) -> int:
    """How many waiting requests expire in the next ``within_seconds`` (the metrics' early warning)."""
    return _waiting().filter(expires_at__lte=timezone.now() + dt.timedelta(seconds=within_seconds)).count()


def pending_list(*, limit: int | None = None) -> QuerySet[ApprovalRequest]:
    """Pending requests, highest risk first, then the soonest to expire."""
    qs = (
        _waiting()
        .select_related("run", "run__graph")
        .annotate(risk_rank=_RISK_ORDER)
        .order_by("-risk_rank", "expires_at", "id")
    )
    return qs[:limit] if limit is not None else qs


def decided_all() -> QuerySet[ApprovalRequest]:
    """The history: decided, expired and auto-approved requests, newest decision first."""
    return (
        ApprovalRequest.objects.exclude(status=ApprovalRequest.PENDING)
        .select_related("run", "run__graph", "decided_by")
        .order_by("-decided_at", "-id")
    )


def decided_list(*, limit: int = 100) -> QuerySet[ApprovalRequest]:
    return decided_all()[:limit]


def approval_get(*, pk: int) -> ApprovalRequest:
    return ApprovalRequest.objects.select_related("run", "run__graph", "decided_by", "activity").get(pk=pk)


def approval_is_waiting(*, pk: int) -> bool:
    """Whether request ``pk`` belongs in the inbox (pending, and its run can still use an answer)."""
    return _waiting().filter(pk=pk).exists()


def waiting_ids(*, limit: int) -> list[int]:
    """The inbox's request ids in its order; the live socket sends them so a page can see what it missed."""
    return list(pending_list(limit=limit).values_list("id", flat=True))


def risk_rank(level: str) -> int:
    return risk.LEVEL_RANK.get(level, 0)


# -- what an approver sees -----------------------------------------------------------------

# Preview lines by their first characters: a unified diff, a shell command ("$ "), an API call ("> ").
_LINE_KINDS = (
    ("+++", "file"),
    ("---", "file"),
    ("@@", "hunk"),
    ("+", "add"),
    ("-", "del"),
    ("$ ", "cmd"),
    ("> ", "api"),
)
CATEGORY_TITLES = {
    "files": "Files touched",
    "commands": "Commands",
    "code": "Code",
    "api_calls": "API calls",
    "amount": "Amount",
}


def highlight(text: str, findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Split ``text`` into segments ``{"text", "mark", "rules"}``: every case-insensitive occurrence of a finding's
    matched text is marked (overlaps merged), so a template can wrap it in <mark> and escape the rest."""
    spans: list[tuple[int, int, str]] = []
    lowered = text.lower()
    for finding in findings:
        needle = str(finding.get("matched", "")).lower()
        if not needle:
            continue
        start = lowered.find(needle)
        while start != -1:
            spans.append((start, start + len(needle), str(finding.get("rule", ""))))
            start = lowered.find(needle, start + len(needle))
    merged: list[list[Any]] = []
    for start, end, rule in sorted(spans, key=lambda span: span[0]):  # stable: rules keep the findings' order
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
            if rule not in merged[-1][2]:
                merged[-1][2].append(rule)
        else:
            merged.append([start, end, [rule]])
    segments: list[dict[str, Any]] = []
    at = 0
    for start, end, rules in merged:
        if start > at:
            segments.append({"text": text[at:start], "mark": False, "rules": ""})
        segments.append({"text": text[start:end], "mark": True, "rules": ", ".join(rules)})
        at = end
    if at < len(text) or not segments:
        segments.append({"text": text[at:], "mark": False, "rules": ""})
    return segments


def _line_kind(line: str) -> str:
    return next((kind for prefix, kind in _LINE_KINDS if line.startswith(prefix)), "text")


def _item_text(item: Any) -> str:
    if isinstance(item, dict):
        parts = [str(item.get(k, "")) for k in ("method", "url", "path", "name", "operation") if item.get(k)]
        return " ".join(parts) or json.dumps(item, sort_keys=True)
    return str(item)


def approval_preview(*, request: ApprovalRequest) -> dict[str, Any]:
    """The preview an approver reads, with each finding's matched text marked.

    ``lines``: the node's preview text line by line, each with a ``kind`` (add, del, hunk and file for a
    unified diff; cmd for "$ " lines; api for "> " lines; text). ``sections``: the action itself by
    category (files, commands, code, API calls, amount), each item marked with its category's findings.
    """
    findings = list(request.findings or [])
    lines = [{"kind": _line_kind(line), "segments": highlight(line, findings)} for line in request.preview.splitlines()]
    sections = []
    action = request.action if isinstance(request.action, dict) else {}
    for category, title in CATEGORY_TITLES.items():
        value = action.get(category)
        if value is None or value == "" or value == []:
            continue
        own = [f for f in findings if f.get("category") == category]
        values = value if isinstance(value, (list, tuple)) else [value]
        items = [{"segments": highlight(_item_text(v), own), "multiline": "\n" in _item_text(v)} for v in values]
        sections.append({"category": category, "title": title, "items": items})
    known = set(CATEGORY_TITLES)
    other = {k: v for k, v in action.items() if k not in known}
    return {"lines": lines, "sections": sections, "other": other}


def approval_summary(*, request: ApprovalRequest) -> str:
    """One line naming what the action does: its first API call, command or file, and how many more."""
    action = request.action if isinstance(request.action, dict) else {}
    items: list[str] = []
    for category in ("api_calls", "commands", "files", "code"):
        value = action.get(category) or []
        for v in value if isinstance(value, (list, tuple)) else [value]:
            items.append(_item_text(v).splitlines()[0] if _item_text(v) else "")
    if action.get("amount") is not None:
        items.append(f"amount {action['amount']}")
    items = [i for i in items if i]
    if not items:
        return request.preview.splitlines()[0] if request.preview else f"approval for node {request.node}"
    return items[0] + (f" (+{len(items) - 1} more)" if len(items) > 1 else "")


def decided_by_label(request: ApprovalRequest) -> str:
    """Who decided: the user, or the risk engine (auto-approved) or the scheduler (expired)."""
    if request.decided_by is not None:
        return request.decided_by.get_username()
    if request.status == ApprovalRequest.AUTO_APPROVED:
        return "risk engine"
    if request.status == ApprovalRequest.EXPIRED:
        return "scheduler (expired)"
    return ""


def inbox_row(*, request: ApprovalRequest) -> dict[str, Any]:
    """What one inbox row shows (the request, a one-line summary, the marked preview, the sort rank)."""
    return {
        "request": request,
        "summary": approval_summary(request=request),
        "preview": approval_preview(request=request),
        "rank": risk_rank(request.level),
    }


def inbox_rows(*, limit: int) -> list[dict[str, Any]]:
    return [inbox_row(request=r) for r in pending_list(limit=limit)]


def waiting_get(*, pk: int) -> ApprovalRequest | None:
    """Request ``pk`` if it is in the inbox, else None."""
    return _waiting().select_related("run", "run__graph").filter(pk=pk).first()


def history_page(*, page: str | None, per_page: int = 100) -> Page[ApprovalRequest]:
    """One page of the history (1-based; a bad or too-large number gives the nearest page).

    Offset paging: an audit trail of thousands is read a page at a time, and
    people ask for "page 3", which keyset cursors cannot give.
    """
    return Paginator(decided_all(), per_page).get_page(page)


def history_rows(requests: Iterable[ApprovalRequest]) -> list[dict[str, Any]]:
    """Decided requests with who decided and a one-line summary."""
    return [{"request": r, "by": decided_by_label(r), "summary": approval_summary(request=r)} for r in requests]
