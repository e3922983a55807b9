"""Reads that several views, commands and services share."""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db.models import Count, F, Max, Q, QuerySet, Sum
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import TruncDate
from django.utils import timezone

from runs.diffing import rows as diff_rows
from runs.engine import END
from runs.engine import statemachine as sm
from runs.engine.composition import Join
from runs.engine.redaction import is_secret_key, redact
from runs.engine.stores import ActivityRecord
from runs.llm.conversation import conversation_of, step_usage
from runs.llm.providers import KIND as LLM_KIND
from runs.models import Activity, Graph, Run, RunEvent, Step, WorkerStatus
from runs.services.blobs import blob_load
from runs.services.leases import gated, graph_caps, in_flight_by_slot, runnable, slot_expression, slot_of
from runs.services.run_store import step_state, step_states

# --- the dashboard ----------------------------------------------------------------


def _server_dirs() -> re.Pattern[str]:
    roots = {str(settings.BASE_DIR), str(settings.VAR_DIR), sys.prefix, sys.base_prefix}
    roots |= set(sysconfig.get_paths().values())
    longest_first = sorted((r.rstrip("/") for r in roots if r and r != "/"), key=len, reverse=True)
    # A root, then any directories under it: what is left is the file's name (and the ", line N" after it).
    return re.compile("(?:" + "|".join(re.escape(r) for r in longest_first) + r")/(?:[^\s\"'/:,()]+/)*")


_SERVER_DIRS = _server_dirs()


def shown_error(text: str) -> str:
    """An error as pages and the API show it: no directory of this server's project or Python, only the file name
    (an error stored before the engine stopped writing paths, or an exception whose message names a file)."""
    return _SERVER_DIRS.sub("", text) if text else text


RUN_SORTS = {
    "-created": ("-created_at", "-id"),
    "created": ("created_at", "id"),
    "-cost": ("-cost_usd", "-id"),  # run_cost_idx; the cursor holds the cost in nano-dollars
}
PAGE_SIZE = 50


# --- the runs list's search by input/state field and by error text ------------------------------------

SEARCH_DOCUMENTS = ("input", "state")
SEARCH_PATH_MAX = 200  # characters of a key path
SEARCH_DEPTH_MAX = 8  # key segments of a path (after an input. or state. prefix)
SEARCH_VALUE_MAX = 200
SEARCH_FIELDS_MAX = 8  # field conditions in one search
SEARCH_ERROR_MAX = 200
_SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INDEX = re.compile(r"0|[1-9][0-9]{0,8}")
_JSON_SCALAR = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null")


class SearchError(ValueError):
    """A field or error search the runs list cannot run; the message says what to write instead."""


@dataclass(frozen=True)
class FieldSearch:
    """One condition of a field search, ``PATH=VALUE`` (equal) or ``PATH~VALUE`` (contains).

    ``document`` is ``input``, ``state`` or ``""`` (either: the input or the stored state matches);
    ``path`` the key segments inside it (a segment of digits is an array index).
    """

    document: str
    path: tuple[str, ...]
    op: str  # "=" or "~"
    value: str

    def __str__(self) -> str:
        return ".".join(((self.document,) if self.document else ()) + self.path) + self.op + self.value


def parse_field_search(text: str) -> FieldSearch:
    """``PATH=VALUE`` or ``PATH~VALUE`` as a condition, or SearchError with a message naming the fault.

    The path is key segments (letters, digits, ``_`` and ``-``) joined by dots, at most
    ``SEARCH_DEPTH_MAX`` deep; a first segment ``input`` or ``state`` searches only that document.
    The first ``=`` or ``~`` ends the path (neither can be part of a key), so a value may hold both.
    """
    text = text.strip()
    cut = min((i for i in (text.find("="), text.find("~")) if i >= 0), default=-1)
    if cut < 0:
        raise SearchError(f"{text[:60]!r} is not a field search: write PATH=VALUE or PATH~VALUE (service=search)")
    raw_path, op, value = text[:cut].strip(), text[cut], text[cut + 1 :].strip()
    shown = raw_path[:60]
    if not raw_path:
        raise SearchError(f"{text[:60]!r} names no key: write PATH=VALUE (incident.service=search)")
    if len(raw_path) > SEARCH_PATH_MAX:
        raise SearchError(f"the key path {shown!r}... is longer than {SEARCH_PATH_MAX} characters")
    segments = raw_path.split(".")
    document = segments[0] if segments[0] in SEARCH_DOCUMENTS else ""
    path = tuple(segments[1:] if document else segments)
    if not path:
        raise SearchError(f"name a key inside the run's {document}: {document}.service=search")
    if len(path) > SEARCH_DEPTH_MAX:
        raise SearchError(f"the key path {shown!r} is {len(path)} keys deep: at most {SEARCH_DEPTH_MAX}")
    for segment in path:
        if not segment:
            raise SearchError(f"the key path {shown!r} has an empty key (a dot too many): write incident.service")
        if not _SEGMENT.fullmatch(segment):
            raise SearchError(
                f"the key path {shown!r} has a bad key {segment[:40]!r}: keys are letters, digits, _ and -, "
                "joined by dots (incident.service)"
            )
        if _is_int(segment) and not _INDEX.fullmatch(segment):
            raise SearchError(f"the key {segment!r} in {shown!r} reads as a number: an array index is 0, 1, 2...")
        if is_secret_key(segment):
            raise SearchError(f"the key {segment!r} names a secret (pages show it redacted): it cannot be searched")
    if "\x00" in value:
        raise SearchError(f"the value searched for in {shown!r} holds a NUL character, which no stored text can")
    if len(value) > SEARCH_VALUE_MAX:
        raise SearchError(f"the value searched for in {shown!r} is longer than {SEARCH_VALUE_MAX} characters")
    if op == "~" and not value:
        raise SearchError(f"{shown}~ needs some text to look for ({shown}~sea)")
    return FieldSearch(document=document, path=path, op=op, value=value)


def parse_run_search(fields: list[str], error: str = "") -> tuple[tuple[FieldSearch, ...], str, list[str]]:
    """The field conditions and the error text of a search, and a message per part that is not valid
    (empty field entries are skipped)."""
    problems: list[str] = []
    conditions: list[FieldSearch] = []
    for text in fields:
        if not text.strip():
            continue
        try:
            conditions.append(parse_field_search(text))
        except SearchError as exc:
            problems.append(str(exc))
    if len(conditions) > SEARCH_FIELDS_MAX:
        problems.append(f"{len(conditions)} field conditions: at most {SEARCH_FIELDS_MAX}")
        conditions = conditions[:SEARCH_FIELDS_MAX]
    error = error.strip()
    if "\x00" in error:
        problems.append("the error text searched for holds a NUL character, which no stored text can")
        error = ""
    if len(error) > SEARCH_ERROR_MAX:
        problems.append(f"the error text searched for is longer than {SEARCH_ERROR_MAX} characters")
        error = ""
    return tuple(conditions), error, problems


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def field_values(value: str) -> list[Any]:
    """What ``PATH=VALUE`` compares with (the typing rule): always the string ``VALUE``; also the JSON value
    when ``VALUE`` is a JSON number, ``true``, ``false`` or ``null`` (``attempts=3`` finds 3 and "3",
    ``dry_run=true`` finds true and "true"; ``service=search`` finds "search")."""
    values: list[Any] = [value]
    if _JSON_SCALAR.fullmatch(value):
        parsed = json.loads(value)
        if not (isinstance(parsed, float) and not math.isfinite(parsed)) and not (
            isinstance(parsed, int) and not isinstance(parsed, bool) and abs(parsed) >= 2**63
        ):
            values.append(parsed)
    return values


def _field_matches(qs: QuerySet[Run], n: int, condition: FieldSearch) -> tuple[QuerySet[Run], Q]:
    """``qs`` with the JSON key transforms of condition ``n`` aliased, and the Q that matches it.

    The path is built as KeyTransform expressions (Django quotes each key in the JSON path it compiles: JSON1's
    ``$."a"."b"`` on SQLite, ``#> '{a,b}'`` on PostgreSQL), so no text of the search reaches the SQL.
    """
    match = Q()
    for document in (condition.document,) if condition.document else SEARCH_DOCUMENTS:
        expression: Any = document
        for segment in condition.path:
            expression = KeyTransform(segment, expression)
        name = f"search_{n}_{document}"
        qs = qs.alias(**{name: expression})
        if condition.op == "~":
            match |= Q(**{f"{name}__icontains": condition.value})
        else:
            for value in field_values(condition.value):
                match |= Q(**{name: value})
    return qs, match


@dataclass(frozen=True)
class RunFilters:
    status: str = ""
    graph: str = ""
    version: int | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    trace: str = ""
    spawned_by: str = ""  # a trace id: only the runs it started (its children and branches)
    kind: str = ""  # run, child or branch; "" is runs and children (a run's branches are listed under it)
    fields: tuple[FieldSearch, ...] = ()  # all must match (parse_field_search)
    error: str = ""  # the run's error contains this, in any case


@dataclass
class RunPage:
    runs: list[Run]
    next_cursor: str | None
    sort: str
    counts: dict[str, int] = field(default_factory=dict)


def _filtered_runs(filters: RunFilters, *, with_status: bool = True) -> QuerySet[Run]:
    """The runs ``filters`` select. Status, graph and time use the run indexes; the field and error searches
    (``fields``, ``error``) are a filter on the rows those select and have no index of their own.

    So a field or error search without a graph, status or time filter scans: the page walks the runs newest
    first until it has a page of matches (all of them when few match), and the status counts read every
    match. Measured on PostgreSQL with 20,000 runs (a loaded 2-core machine): the list query 8-20 ms when
    matches are common, 50-120 ms when it reads every run; the counts 30-130 ms; the whole page 75-105 ms
    (60 ms without a search), 30 ms with a day's ``since``. It grows with the runs a scan reads.
    """
    qs = Run.objects.all()
    if with_status and filters.status:
        qs = qs.filter(status=filters.status)
    if filters.graph:
        qs = qs.filter(graph__name=filters.graph)
        if filters.version is not None:
            qs = qs.filter(graph__version=filters.version)
    if filters.since is not None:
        qs = qs.filter(created_at__gte=filters.since)
    if filters.until is not None:
        qs = qs.filter(created_at__lt=filters.until)
    if filters.trace:
        qs = qs.filter(trace_id__startswith=filters.trace.lower())
    if filters.spawned_by:
        qs = qs.filter(spawned_by__trace_id=filters.spawned_by.lower())
    if filters.kind:
        qs = qs.filter(kind=filters.kind)
    elif not filters.spawned_by:
        qs = qs.exclude(kind="branch")
    for n, condition in enumerate(filters.fields):
        qs, match = _field_matches(qs, n, condition)
        qs = qs.filter(match)
    if filters.error:
        qs = qs.filter(error__icontains=filters.error)
    return qs


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICRO = dt.timedelta(microseconds=1)


def encode_cursor(run: Run, sort: str = "-created") -> str:
    """The keyset position after ``run``: created_at in whole microseconds (sorted by cost: the cost in
    nano-dollars) and the id, safe in a URL as is."""
    if sort == "-cost":
        return f"{round(run.cost_usd * 1e9)}~{run.pk}"
    return f"{(run.created_at - _EPOCH) // _MICRO}~{run.pk}"


def decode_cursor(cursor: str) -> tuple[dt.datetime, int] | None:
    """None for a cursor that is not ours (the caller shows the first page)."""
    micros, _, pk = cursor.partition("~")
    try:
        when, ident = _EPOCH + dt.timedelta(microseconds=int(micros)), int(pk)
    except (ValueError, OverflowError):
        return None
    return (when, ident) if 0 < ident < 2**63 else None


def run_list(*, filters: RunFilters, sort: str = "-created", cursor: str = "", limit: int = PAGE_SIZE) -> RunPage:
    """One page of runs, keyset-paginated on (created_at, id): the cost of a page does not grow with its depth.

    ``cursor`` is the last row of the previous page (``encode_cursor``); the
    indexes ``run_created_idx``, ``run_status_created_idx`` and
    ``run_graph_created_idx`` serve the first page and each filtered page.
    """
    sort = sort if sort in RUN_SORTS else "-created"
    qs = (
        _filtered_runs(filters)
        .select_related("graph")
        .annotate(spawned_by_trace=F("spawned_by__trace_id"))
        .order_by(*RUN_SORTS[sort])
    )
    position = decode_cursor(cursor) if cursor else None
    if position is not None and sort == "-cost":
        nanos, _, _ = cursor.partition("~")
        cost, pk = int(nanos) / 1e9, position[1]
        qs = qs.filter(Q(cost_usd__lt=cost) | Q(cost_usd=cost, id__lt=pk))
    elif position is not None:
        when, pk = position
        if sort == "-created":
            qs = qs.filter(Q(created_at__lt=when) | Q(created_at=when, id__lt=pk))
        else:
            qs = qs.filter(Q(created_at__gt=when) | Q(created_at=when, id__gt=pk))
    rows: list[Run] = list(
        qs.defer("input", "state", "context", "error", "wait_reason", "graph__definition", "graph__node_hashes")[
            : limit + 1
        ]
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return RunPage(runs=rows, next_cursor=encode_cursor(rows[-1], sort) if more and rows else None, sort=sort)


def run_status_counts(*, filters: RunFilters) -> dict[str, int]:
    """How many runs per status among those the other filters select (one GROUP BY)."""
    counts = {status: 0 for status in sm.STATUSES}
    for row in _filtered_runs(filters, with_status=False).order_by().values("status").annotate(n=Count("id")):
        counts[row["status"]] = row["n"]
    return counts


def graph_choices() -> dict[str, list[int]]:
    """Graph name -> its versions, newest first (for filters and the start form)."""
    choices: dict[str, list[int]] = {}
    for name, version in Graph.objects.order_by("name", "-version").values_list("name", "version"):
        choices.setdefault(name, []).append(version)
    return choices


def activity_view(a: Activity | ActivityRecord) -> dict[str, Any]:
    """One activity as every reader shows it (run page, steps and activities API, replay): a stored row
    (large responses as their blob reference) or an engine record (responses resolved)."""
    return {
        "step": a.step,
        "seq": a.seq,
        "type": a.type,
        "status": a.status,
        "attempt": a.attempt,
        "request": a.request,
        "request_hash": a.request_hash,
        "response": a.response,
        "error": a.error,
        "duration_ms": round(a.duration_ms, 3),
    }


def event_dict(e: RunEvent) -> dict[str, Any]:
    return {
        "id": e.pk,
        "kind": e.kind,
        "from_status": e.from_status,
        "to_status": e.to_status,
        "step": e.step,
        "message": shown_error(e.message),
        "actor": e.actor,
        "detail": e.detail,
        "at": e.created_at.isoformat(),
    }


def run_steps_view(*, run: Run, after: int = -1, limit: int | None = None) -> list[dict[str, Any]]:
    """Steps after index ``after`` (at most ``limit``) as the run page shows them: state, input, diff, output,
    activities, hashes.

    A step's input is the state after the previous step (the run's input for step 0).
    """
    rows = Step.objects.filter(run_id=run.pk, index__gt=after).order_by("index")
    steps = list(rows[:limit] if limit is not None else rows)
    if not steps:
        return []
    states = step_states(run_id=run.pk) if after < 0 else None
    previous: Any
    if states is None:
        previous = step_state(run_id=run.pk, index=after) if after >= 0 else run.input
    else:
        previous = run.input
    activities: dict[int, list[dict[str, Any]]] = {}
    for a in Activity.objects.filter(run_id=run.pk, step__gt=after, step__lte=steps[-1].index).order_by("step", "seq"):
        view = {**activity_view(a), "error": shown_error(a.error)}
        if a.type == LLM_KIND:  # a model call also shows as a chat (its response resolved if stored as a blob)
            view["conversation"] = conversation_of({**view, "response": blob_load(a.response)})
        activities.setdefault(a.step, []).append(view)
    out = []
    for s in steps:
        state = states[s.index] if states is not None else step_state(run_id=run.pk, index=s.index)
        out.append(
            {
                "index": s.index,
                "node": s.node,
                "attempt": s.attempt,
                "edge": s.edge,
                "started_at": s.started_at.isoformat(),
                "duration_ms": round(s.duration_ms, 3),
                "error": shown_error(s.error),
                "input": redact(previous),
                "state": redact(state),
                "output": redact(s.output),
                "diff": diff_rows(previous, state),
                "hashes": {"input": s.input_hash, "state": s.state_hash, "output": s.output_hash},
                "activities": activities.get(s.index, []),
                "llm": step_usage([a["conversation"] for a in activities.get(s.index, []) if a.get("conversation")]),
            }
        )
        previous = state
    return out


def run_events_view(*, run: Run, after: int = 0) -> list[dict[str, Any]]:
    return [event_dict(e) for e in RunEvent.objects.filter(run_id=run.pk, id__gt=after).order_by("id")]


def run_header(*, run: Run) -> dict[str, Any]:
    """What the header of a run page shows, also sent over the socket when it changes."""
    queued = (run.started_at - run.created_at).total_seconds() if run.started_at else None
    return {
        "id": run.pk,
        "trace_id": run.trace_id,
        "status": run.status,
        "terminal": run.is_terminal,
        "node": run.node,
        "step_index": run.step_index,
        # Steps are named by index from 0; "steps" counts them all, a fork's inherited ones (0..parent_step) too.
        "steps": run.step_index,
        "inherited": run.parent_step + 1 if run.parent_id and run.parent_step is not None else 0,
        "attempt": run.attempt,
        "error": shown_error(run.error),
        "wait_reason": run.wait_reason,
        "created_at": run.created_at.isoformat(),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "duration_seconds": run.duration_seconds,
        "queued_seconds": queued,
        "final_state": redact(run.state) if run.is_terminal else None,
        "tokens": run.tokens,
        "cost_usd": run.cost_usd,
    }


def graph_diagram(*, graph: Graph) -> dict[str, Any]:
    """Nodes and edges for the diagram script (dagre lays them out in the browser), with the static fan-outs
    (``forks``: a node whose edges for one label lead to several nodes at once) and the join nodes (``joins``:
    node -> its mode and the marker's label, "join: all" or "join: first 2")."""
    definition = graph.definition
    edges = definition.get("edges", [])
    targets: dict[tuple[str, str | None], list[str]] = {}
    for e in edges:
        targets.setdefault((e["from"], e.get("label")), []).append(e["to"])
    joins = {}
    for n in definition.get("nodes", []):
        if isinstance(n.get("join"), dict):
            join = Join.from_dict(n["join"])
            mode = "any" if join.mode == "first" and join.k == 1 and n["join"].get("mode") == "any" else join.mode
            label = f"join: first {join.k}" if mode == "first" else f"join: {mode}"
            joins[n["name"]] = {
                "mode": mode,
                "k": join.k,
                "errors": join.errors,
                "label": label,
                "reducers": join.reducers,
            }
    return {
        "entry": definition.get("entry"),
        "nodes": [n["name"] for n in definition.get("nodes", [])],
        "edges": [{"from": e["from"], "to": e["to"], "label": e.get("label")} for e in edges],
        "end": END,
        "forks": [{"from": src, "label": label, "to": to} for (src, label), to in targets.items() if len(to) > 1],
        "joins": joins,
    }


def graph_summaries() -> list[dict[str, Any]]:
    """Each graph name with its latest version, version count and run count."""
    latest: dict[str, Graph] = {}
    versions: dict[str, int] = {}
    for g in Graph.objects.order_by("name", "-version").defer("definition", "node_hashes"):
        latest.setdefault(g.name, g)
        versions[g.name] = versions.get(g.name, 0) + 1
    runs = dict(
        Run.objects.order_by().values_list("graph__name").annotate(n=Count("id")).values_list("graph__name", "n")
    )
    return [
        {"name": name, "latest": g, "versions": versions[name], "runs": runs.get(name, 0)} for name, g in latest.items()
    ]


def graph_versions(*, name: str) -> list[Graph]:
    return list(
        Graph.objects.filter(name=name)
        .select_related("published_by")
        .order_by("-version")
        .annotate(run_count=Count("runs"))
    )


# Counts other apps add to the home page and the metrics summary, by name; approvals registers
# "approvals_waiting" (requests waiting for a decision) from AppConfig.ready().
COUNTS: dict[str, Callable[[], int]] = {}


def register_count(name: str, count: Callable[[], int]) -> None:
    COUNTS[name] = count


# What a waiting run waits on, by the type of the pending activity that suspended it: (run id, step, seq) ->
# {"label", "url"} of the page to go to, or None. Apps register theirs (approvals: the request's page).
WAIT_LINKS: dict[str, Callable[[int, int, int], dict[str, str] | None]] = {
    "signal": lambda run_id, step, seq: {"label": "send the signal", "url": "#signal-card"},
    "join": lambda run_id, step, seq: {"label": "its branches", "url": "#h-spawned"},
    "wait_runs": lambda run_id, step, seq: {"label": "its child runs", "url": "#h-spawned"},
}


def register_wait_link(activity_type: str, link: Callable[[int, int, int], dict[str, str] | None]) -> None:
    WAIT_LINKS[activity_type] = link


def run_wait_link(*, run: Run) -> dict[str, str] | None:
    """Where to go for what a WAITING run waits on (see WAIT_LINKS), or None."""
    if run.status != sm.WAITING:
        return None
    waiting = Activity.objects.filter(run_id=run.pk, status="pending").order_by("-step", "-seq")
    pending = waiting.values("type", "step", "seq").first()
    link = WAIT_LINKS.get(pending["type"]) if pending else None
    return link(run.pk, pending["step"], pending["seq"]) if link and pending else None


def approvals_waiting_count() -> int:
    """Approval requests waiting for a decision (0 where no app counts them)."""
    count = COUNTS.get("approvals_waiting")
    return count() if count is not None else 0


def dashboard_summary(*, now: dt.datetime, days: int = 7) -> dict[str, Any]:
    """Runs started, completed and failed per day over ``days`` days (UTC), the error rate and the slowest graphs."""
    start = (now - dt.timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    day_list = [(start + dt.timedelta(days=i)).date() for i in range(days)]
    per_day = {d: {"started": 0, "completed": 0, "failed": 0} for d in day_list}
    for row in (
        Run.objects.filter(created_at__gte=start)
        .annotate(day=TruncDate("created_at", tzinfo=dt.UTC))
        .order_by()
        .values("day")
        .annotate(n=Count("id"))
    ):
        if row["day"] in per_day:
            per_day[row["day"]]["started"] = row["n"]
    # One pass over the finished runs gives both the daily counts and the slowest graphs (a scan each
    # before: 35 ms apiece with 100,000 runs in the window).
    took: dict[int, list[float]] = {}  # graph version id -> [seconds summed, runs timed]
    for row in (
        Run.objects.filter(finished_at__gte=start, status__in=[sm.COMPLETED, sm.FAILED, sm.TIMED_OUT])
        .annotate(day=TruncDate("finished_at", tzinfo=dt.UTC))
        .order_by()
        .values("day", "status", "graph_id")
        .annotate(n=Count("id"), timed=Count("started_at"), took=Sum(F("finished_at") - F("started_at")))
    ):
        if row["day"] in per_day:
            key = "completed" if row["status"] == sm.COMPLETED else "failed"
            per_day[row["day"]][key] += row["n"]
        if row["status"] == sm.COMPLETED and row["timed"]:
            total = row["took"]
            seconds = total.total_seconds() if isinstance(total, dt.timedelta) else float(total or 0) / 1e6
            acc = took.setdefault(row["graph_id"], [0.0, 0])
            acc[0] += seconds
            acc[1] += row["timed"]
    completed = sum(d["completed"] for d in per_day.values())
    failed = sum(d["failed"] for d in per_day.values())
    finished = completed + failed
    # Versions of a graph are one graph here; grouping by the id spares the scan a join.
    names = dict(Graph.objects.filter(pk__in=list(took)).values_list("pk", "name"))
    per_graph: dict[str, list[float]] = {}
    for graph_id, (total, n) in took.items():
        acc = per_graph.setdefault(names[graph_id], [0.0, 0])
        acc[0] += total
        acc[1] += n
    averages = sorted(((total / n, name, n) for name, (total, n) in per_graph.items()), reverse=True)[:5]
    slowest = [{"graph": name, "avg_seconds": avg, "runs": int(n)} for avg, name, n in averages]
    return {
        "days": [{"day": d, **per_day[d]} for d in day_list],
        "completed": completed,
        "failed": failed,
        "started": sum(d["started"] for d in per_day.values()),
        "error_rate": (failed / finished) if finished else 0.0,
        "slowest": slowest,
        "active": Run.objects.filter(status__in=sm.ACTIVE).count(),
        "approvals_waiting": approvals_waiting_count(),
    }


def input_example(*, schema: dict[str, Any]) -> Any:
    """A starting input for the start form: required properties and those with defaults, filled in."""
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        props = schema.get("properties", {})
        wanted = [k for k in props if k in schema.get("required", []) or "default" in props[k]]
        return {k: input_example(schema=props[k]) for k in wanted}
    return {"string": "", "integer": 0, "number": 0, "boolean": False, "array": []}.get(str(kind))


SHORT_ID_MIN = 6  # hex characters of a trace id that find a run (the lists show 12)


def runs_by_prefix(*, prefix: str, limit: int = 20) -> list[Run]:
    """Runs whose trace id starts with ``prefix`` (lower-case hex), newest first: at most ``limit``."""
    return list(
        Run.objects.filter(trace_id__startswith=prefix).select_related("graph").order_by("-created_at", "-id")[:limit]
    )


def compare_candidates(*, run: Run, limit: int = 25) -> QuerySet[Run]:
    """Other recent runs of the same graph (any version): the "Compare with…" choices on a run page."""
    return (
        Run.objects.filter(graph__name=run.graph.name)
        .exclude(pk=run.pk)
        .select_related("graph")
        .order_by("-created_at", "-id")[:limit]
    )


def run_forks(*, run: Run) -> list[dict[str, Any]]:
    """The runs forked from ``run``, oldest first: trace id, fork step, status, graph version."""
    return [
        {"trace_id": t, "step": s, "status": st, "version": v, "created_at": c}
        for t, s, st, v, c in Run.objects.filter(parent=run)
        .order_by("created_at", "id")
        .values_list("trace_id", "parent_step", "status", "graph__version", "created_at")
    ]


# --- the queue and the workers (the dashboard and /metrics) ----------------------------------


def slot_waits(*, limit: int = 50) -> list[dict[str, Any]]:
    """The slots (concurrency keys, graph caps) with runs waiting, most waiting first, at most ``limit`` of them.

    Each: ``key``, ``graph``, ``waiting`` (its PENDING runs, while the slot is full or its rate holds the
    next start back; a slot with room has none waiting for it), ``in_flight`` and ``limit``. Two grouped
    queries.
    """
    caps = graph_caps(fresh=True)
    now = timezone.now()
    pending = (
        Run.objects.filter(gated(caps), held=False)
        .annotate(slot=slot_expression())
        .order_by()
        .values("slot")
        .annotate(n=Count("id"), most=Max("concurrency_limit"), later=Max("not_before"))
        .order_by("-n", "slot")[:limit]
    )
    rows = list(pending)
    busy = in_flight_by_slot([r["slot"] for r in rows], caps, now)
    waits = []
    for r in rows:
        key = r["slot"]
        cap = caps.get(key, r["most"])
        running = busy.get(key, 0)
        full = (cap is not None and running >= cap) or (r["later"] is not None and r["later"] > now)
        waiting = r["n"] if full else 0
        if waiting:
            waits.append(
                {"key": key, "graph": key.split(":", 1)[0], "waiting": waiting, "in_flight": running, "limit": cap}
            )
    return waits


def caps_waiting() -> dict[str, int]:
    """Per capped graph (a key-less slot), the PENDING runs waiting for a slot (the dashboard's line)."""
    return {w["key"]: w["waiting"] for w in slot_waits() if ":" not in w["key"]}


def run_slot_notes(*, runs: list[Run]) -> dict[int, str]:
    """Why each PENDING run of ``runs`` that needs a slot is not running yet (run id -> a sentence).

    "waiting for a slot: 1 of 1 running for key billing:checkout", or the key's rate and when its next
    start is allowed, or the runs of its key ahead of it. Two queries for a page of runs.
    """
    caps = graph_caps(fresh=True)
    now = timezone.now()
    rules = {}
    for run in runs:
        rule = slot_of(
            {
                "status": run.status,
                "kind": run.kind,
                "concurrency_key": run.concurrency_key,
                "concurrency_limit": run.concurrency_limit,
                "concurrency_rate": run.concurrency_rate,
                "graph__name": run.graph.name,
            },
            caps,
        )
        if rule is not None:
            rules[run.pk] = rule
    if not rules:
        return {}
    busy = in_flight_by_slot(sorted({r.key for r in rules.values()}), caps, now)
    notes = {}
    for run in runs:
        rule = rules.get(run.pk)
        if rule is None:
            continue
        running = busy.get(rule.key, 0)
        if run.not_before is not None and run.not_before > now and rule.rate:
            notes[run.pk] = (
                f"waiting for the rate of key {rule.key}: {rule.rate['starts']} starts per "
                f"{rule.rate['per_seconds']:g} s; the next at {timezone.localtime(run.not_before):%H:%M:%S}"
            )
        elif rule.limit is not None and running >= rule.limit:
            notes[run.pk] = f"waiting for a slot: {running} of {rule.limit} running for key {rule.key}"
        else:
            notes[run.pk] = f"queued for a slot of key {rule.key} ({running} of {rule.limit or 'any'} running)"
    return notes


def workers_alive(*, within_seconds: float = 30.0) -> list[WorkerStatus]:
    """Workers seen recently, with their runs in flight (for the dashboard and metrics)."""
    since = timezone.now() - dt.timedelta(seconds=within_seconds)
    return list(WorkerStatus.objects.filter(last_seen_at__gte=since))


def queue_depth() -> int:
    """Runs waiting for a worker: runnable now and not leased."""
    return runnable().count()
