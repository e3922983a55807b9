"""Composition as the run page shows it: who spawned a run, its fan-outs and children, the timeline's lanes,
its waits, the player's commit order, a pending signal and what a join step joined. Pure reads.

A run's branches (kind branch) and children (kind child) are runs of their own. The timeline draws the
run's own lane and, per fan-out, one lane per branch: the first ``LANES_SHOWN`` of each fan-out, the rest
counted and linked (the runs list filtered by ``spawned_by``), so a fan-out of 1,000 draws 20 lanes; the
children are lanes that link to their runs. Positions on the time axis are percentages, computed here.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from typing import Any

from django.db.models import Count, Q

from runs.engine import statemachine as sm
from runs.models import Activity, Run, RunEvent, Step, Timer
from runs.selectors import input_example
from runs.services.blobs import BlobUnavailable, blob_load

LANES_SHOWN = 20  # branch lanes (and child lanes) drawn per group; the rest are counted
BLOCKS_SHOWN = 100  # step blocks drawn per lane
ORDER_LIMIT = 5000  # steps the player's commit order carries
JOINED_SHOWN = 20  # branches a join step's summary names
SIGNAL = "signal"
TIMER = "timer"
FANOUT_KEYS = ("step", "node", "join", "branches", "limit", "dynamic", "starts", "badge")
WAIT_LABELS = {"join": "waiting for its branches", "wait_runs": "waiting for child runs", "send_a2a": "specialist"}


def _iso(moment: dt.datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _finished(started: dt.datetime, duration_ms: float) -> dt.datetime:
    return started + dt.timedelta(milliseconds=duration_ms)


# -- lineage --------------------------------------------------------------------------------------


def spawner(*, run: Run) -> dict[str, Any] | None:
    """The run that started ``run`` and where: ``{"kind", "trace_id", "step", "branch", "start", "total"}`` for a
    branch (its number, start node and how many branches its fan-out has), ``{"kind", "trace_id", "step", "seq"}``
    for a child; None for a run nobody spawned (or whose spawner is gone)."""
    if run.spawned_by_id is None:
        return None
    trace = Run.objects.filter(pk=run.spawned_by_id).values_list("trace_id", flat=True).first()
    if trace is None:
        return None
    place: dict[str, Any] = {"kind": run.kind, "trace_id": trace, "step": run.spawn_step, "seq": run.spawn_seq}
    if run.kind == Run.KIND_BRANCH:
        place["branch"] = run.spawn_seq
        place["start"] = str(run.context.get("start", "")) if isinstance(run.context, dict) else ""
        place["total"] = Run.objects.filter(
            spawned_by_id=run.spawned_by_id, spawn_step=run.spawn_step, kind=Run.KIND_BRANCH
        ).count()
    return place


def fanouts(*, run: Run) -> list[dict[str, Any]]:
    """Each fan-out of ``run``, in step order: its step and node, join, branch count, limit, whether it came from
    Sends, its branches' start nodes, how many branches are in each status and how many are held (queued)."""
    events: list[Any] = list(
        RunEvent.objects.filter(run_id=run.pk, kind="fanout").order_by("id").values("step", "detail")
    )
    if not events:
        return []
    steps = [e["step"] for e in events]
    nodes = dict(Step.objects.filter(run_id=run.pk, index__in=steps).values_list("index", "node"))
    branches = Run.objects.filter(spawned_by_id=run.pk, kind=Run.KIND_BRANCH).order_by()
    counts: dict[int, Counter[str]] = {}
    held: Counter[int] = Counter()
    row: Any
    for row in branches.values("spawn_step", "status", "held").annotate(n=Count("id")):
        counts.setdefault(row["spawn_step"], Counter())[row["status"]] += row["n"]
        if row["held"] and row["status"] == sm.PENDING:
            held[row["spawn_step"]] += row["n"]
    starts: dict[int, list[str]] = {}
    step: Any
    for step, start in branches.values_list("spawn_step", "context__start").distinct():
        starts.setdefault(step, []).append(str(start))
    out = []
    for e in events:
        detail = e["detail"] if isinstance(e["detail"], dict) else {}
        step = e["step"]
        total = int(detail.get("branches") or 0)
        limit = detail.get("limit")
        status_counts = counts.get(step, Counter())
        out.append(
            {
                "step": step,
                "node": nodes.get(step, ""),
                "join": str(detail.get("join", "")),
                "branches": total,
                "limit": limit,
                "dynamic": bool(detail.get("dynamic")),
                "starts": sorted(starts.get(step, [])),
                "counts": [(s, status_counts[s]) for s in sm.STATUSES if status_counts[s]],
                "held": held[step],
                "active": sum(status_counts[s] for s in sm.ACTIVE),
                "badge": f"\u00d7{total}" + (f", \u2264{limit} at once" if limit else ""),  # "x50, <=10 at once"
            }
        )
    return out


def children(*, run: Run, limit: int = LANES_SHOWN) -> tuple[list[dict[str, Any]], int]:
    """The first ``limit`` child runs of ``run`` (in the order it started them) and how many it has."""
    qs = Run.objects.filter(spawned_by_id=run.pk, kind=Run.KIND_CHILD)
    rows: list[Any] = list(
        qs.order_by("spawn_step", "spawn_seq").values(
            "pk", "trace_id", "graph__name", "graph__version", "status", "spawn_step", "spawn_seq", "detached",
            "created_at", "started_at", "finished_at",
        )[:limit]
    )
    return rows, (qs.count() if len(rows) == limit else len(rows))


# -- waits ----------------------------------------------------------------------------------------


def _wait_label(
    kind: str, name: str | None, timer: dict[str, Any] | None, message: str, since: dt.datetime
) -> tuple[str, str]:
    """A wait's short label and its longer title (a timer's due time with its date when that is another day)."""
    if kind == TIMER and timer is not None:
        due = timer["due_at"].astimezone(dt.UTC)
        fired = f", fired {timer['fired_at']:%Y-%m-%d %H:%M:%S} UTC" if timer["fired_at"] else ""
        when = f"{due:%H:%M:%S}" if due.date() == since.astimezone(dt.UTC).date() else f"{due:%Y-%m-%d %H:%M:%S}"
        return f"timer until {when} UTC", f"durable timer due {due:%Y-%m-%d %H:%M:%S} UTC{fired}"
    if kind == SIGNAL:
        return f"signal {name!r}", f"waiting for signal {name!r} from outside"
    return WAIT_LABELS.get(kind, message or kind), message or kind


def waits(*, run_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Each run's waits (WAITING spells), oldest first: ``{"event_id", "step", "kind", "label", "title", "since",
    "ended", "until"}``. ``kind`` is the type of the activity that suspended it (timer, signal, join, wait_runs, ...),
    ``until`` a timer's due time, ``ended`` None while it still waits."""
    if not run_ids:
        return {}
    spells: dict[int, list[dict[str, Any]]] = {}
    open_: dict[int, dict[str, Any]] = {}
    transitions = RunEvent.objects.filter(run_id__in=run_ids).exclude(to_status="").order_by("run_id", "id")
    e: Any
    for e in transitions.values("id", "run_id", "to_status", "step", "message", "created_at"):
        current = open_.pop(e["run_id"], None)
        if current is not None:
            current["ended"] = e["created_at"]
        if e["to_status"] == sm.WAITING:
            spell = {"event_id": e["id"], "step": e["step"], "since": e["created_at"], "ended": None,
                     "message": e["message"]}
            spells.setdefault(e["run_id"], []).append(spell)
            open_[e["run_id"]] = spell
    if not spells:
        return {}
    activities: dict[tuple[int, int], list[Any]] = {}
    a: Any
    for a in (
        Activity.objects.filter(run_id__in=list(spells))
        .order_by("run_id", "step", "seq")
        .values("run_id", "step", "seq", "type", "created_at", "request__name")
    ):
        activities.setdefault((a["run_id"], a["step"]), []).append(a)
    timers: dict[tuple[int, int, int], Any] = {
        (t["run_id"], t["step"], t["seq"]): t
        for t in Timer.objects.filter(run_id__in=list(spells)).values("run_id", "step", "seq", "due_at", "fired_at")
    }
    out: dict[int, list[dict[str, Any]]] = {}
    for run_id, found in spells.items():
        for spell in found:
            # The activity that suspended the step: its last one recorded by the time the run began to wait.
            late = spell["since"] + dt.timedelta(seconds=1)
            recorded = [a for a in activities.get((run_id, spell["step"]), []) if a["created_at"] <= late]
            cause = recorded[-1] if recorded else None
            kind = cause["type"] if cause else ""
            timer = timers.get((run_id, cause["step"], cause["seq"])) if cause and kind == TIMER else None
            name = cause["request__name"] if cause else None
            label, title = _wait_label(kind, name, timer, spell["message"], spell["since"])
            out.setdefault(run_id, []).append(
                {
                    "event_id": spell["event_id"],
                    "step": spell["step"],
                    "kind": kind or "wait",
                    "label": label,
                    "title": title,
                    "since": spell["since"],
                    "ended": spell["ended"],
                    "until": timer["due_at"] if timer else None,
                }
            )
    return out


def waits_json(spells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Waits as the page's script reads them (times as ISO 8601)."""
    return [
        {**w, "since": _iso(w["since"]), "ended": _iso(w["ended"]), "until": _iso(w["until"])} for w in spells
    ]


def pending_signal(*, run: Run) -> dict[str, Any] | None:
    """The signal a WAITING run waits for: ``{"name", "schema", "example", "step", "since"}``; None otherwise."""
    if run.status != sm.WAITING:
        return None
    activity = Activity.objects.filter(run_id=run.pk, type=SIGNAL, status="pending").order_by("step", "seq").first()
    if activity is None:
        return None
    request = activity.request if isinstance(activity.request, dict) else {}
    schema = request.get("schema") if isinstance(request.get("schema"), dict) else None
    example = input_example(schema=schema) if schema else {}
    return {
        "name": str(request.get("name", "")),
        "schema": schema,
        "example": json.dumps(example, indent=2),
        "step": activity.step,
        "since": activity.created_at,
    }


# -- the timeline's lanes -------------------------------------------------------------------------


class _Axis:
    """Percent positions on the time axis from ``start`` to ``end``."""

    def __init__(self, start: dt.datetime, end: dt.datetime):
        self.start = start
        self.span = max((end - start).total_seconds(), 0.001)

    def at(self, moment: dt.datetime) -> float:
        return max(0.0, min(100.0, 100.0 * (moment - self.start).total_seconds() / self.span))

    def segment(self, begin: dt.datetime, end: dt.datetime, *, minimum: float = 0.4) -> dict[str, str]:
        left = self.at(begin)
        width = max(minimum, self.at(end) - left)
        left = min(left, 100.0 - width)  # a short block at the very end stays inside the track
        return {"left": f"{left:.3f}", "width": f"{width:.3f}"}


def _lane_steps(run_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    steps: dict[int, list[dict[str, Any]]] = {}
    s: Any
    for s in (
        Step.objects.filter(run_id__in=run_ids)
        .order_by("run_id", "index")
        .values("run_id", "index", "node", "attempt", "started_at", "duration_ms", "error")
    ):
        steps.setdefault(s["run_id"], []).append(s)
    return steps


def _lane(
    row: dict[str, Any], steps: list[dict[str, Any]], spells: list[dict[str, Any]], axis: _Axis, now: dt.datetime
) -> dict[str, Any]:
    blocks = []
    for s in steps[:BLOCKS_SHOWN]:
        end = _finished(s["started_at"], s["duration_ms"])
        blocks.append(
            {
                "index": s["index"],
                "node": s["node"],
                "attempt": s["attempt"],
                "failed": bool(s["error"]),
                "ms": round(s["duration_ms"], 3),
                **axis.segment(s["started_at"], end),
            }
        )
    drawn = []
    for w in spells:
        drawn.append({**w, **axis.segment(w["since"], w["ended"] or now), "open": w["ended"] is None})
    queued = None
    if row.get("kind") == Run.KIND_BRANCH:
        began = row["started_at"] or (row["finished_at"] if row["status"] in sm.TERMINAL else now)
        if began and (began - row["created_at"]).total_seconds() > 0.001:
            queued = {
                **axis.segment(row["created_at"], began, minimum=0.2),
                "open": row["started_at"] is None,
                "held": row.get("held", False),
            }
    return {
        "trace_id": row["trace_id"],
        "status": row["status"],
        "blocks": blocks,
        "more_steps": max(len(steps) - BLOCKS_SHOWN, 0),
        "waits": drawn,
        "queued": queued,
    }


def _lane_row(r: Run) -> dict[str, Any]:
    return {"pk": r.pk, "trace_id": r.trace_id, "status": r.status, "kind": r.kind, "created_at": r.created_at,
            "started_at": r.started_at, "finished_at": r.finished_at, "held": r.held}


def lanes(
    *, run: Run, now: dt.datetime, groups: list[dict[str, Any]], kids: list[dict[str, Any]], kids_total: int
) -> dict[str, Any]:
    """The timeline as lanes, for a run that spawned branches (``groups``: :func:`fanouts`) or children (``kids``,
    ``kids_total``: :func:`children`). Adds each fan-out's ``lanes`` (its first ``LANES_SHOWN`` branches) and
    ``more`` to ``groups``.

    ``{"active", "start", "end", "seconds", "main": lane, "fanouts": groups, "children": {"lanes", "more"}}``; a
    lane is ``{"trace_id", "status", "blocks", "waits", "queued"}`` (a branch's also its number and start node), a
    child's its graph and a ``bar`` from its creation to its end; positions are percentages of the axis.
    """
    shown: dict[int, list[dict[str, Any]]] = {}
    for group in groups:
        shown[group["step"]] = [
            {**_lane_row(b), "branch": b.spawn_seq, "start": str(b.context.get("start", ""))}
            for b in Run.objects.filter(spawned_by_id=run.pk, spawn_step=group["step"], kind=Run.KIND_BRANCH)
            .order_by("spawn_seq")
            .only("pk", "trace_id", "status", "kind", "created_at", "started_at", "finished_at", "spawn_seq",
                  "context", "held")[:LANES_SHOWN]
        ]
    ids = [run.pk] + [b["pk"] for rows in shown.values() for b in rows]
    steps = _lane_steps(ids)
    spells = waits(run_ids=ids)
    start = run.started_at or run.created_at
    moments = [run.finished_at or run.updated_at]
    moments += [_finished(s["started_at"], s["duration_ms"]) for found in steps.values() for s in found]
    moments += [b["finished_at"] or b["created_at"] for rows in shown.values() for b in rows]
    moments += [k["finished_at"] or k["created_at"] for k in kids]
    active = (
        not run.is_terminal
        or any(g["active"] for g in groups)
        or any(k["status"] in sm.ACTIVE for k in kids)
    )
    if active:
        moments.append(now)
    end = max([start, *moments])
    axis = _Axis(start, end)
    main = _lane({**_lane_row(run), "kind": Run.KIND_RUN}, steps.get(run.pk, []), spells.get(run.pk, []), axis, now)
    for group in groups:
        group["lanes"] = [
            {**_lane(b, steps.get(b["pk"], []), spells.get(b["pk"], []), axis, now), "branch": b["branch"],
             "start": b["start"]}
            for b in shown[group["step"]]
        ]
        group["more"] = max(group["branches"] - len(group["lanes"]), 0)
    child_lanes = [
        {
            "trace_id": k["trace_id"],
            "status": k["status"],
            "graph": k["graph__name"],
            "version": k["graph__version"],
            "step": k["spawn_step"],
            "detached": k["detached"],
            "bar": axis.segment(k["created_at"], k["finished_at"] or now),
        }
        for k in kids
    ]
    return {
        "active": active,
        "start": start,
        "end": end,
        "seconds": axis.span,
        "main": main,
        "fanouts": groups,
        "children": {"lanes": child_lanes, "more": max(kids_total - len(child_lanes), 0)},
    }


def lane_choices(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The branches the player can follow: those the timeline draws (after :func:`lanes`), ``{"trace_id", "label"}``."""
    return [
        {
            "trace_id": lane["trace_id"],
            "label": f"branch {lane['branch']} · {lane['start']} (fan-out at step {g['step']})",
        }
        for g in groups
        for lane in g.get("lanes", [])
    ]


# -- the player's commit order --------------------------------------------------------------------


def commit_order(*, run: Run, limit: int = ORDER_LIMIT) -> tuple[list[dict[str, Any]], bool]:
    """The steps of ``run`` and of its branches in the order they were committed (a step's finish: its start plus
    its duration), at most ``limit``: ``[{"trace_id", "index", "node", "branch", "spawn_step"}]``, and whether more
    were left out. ``branch`` and ``spawn_step`` (its fan-out's step) are None for the run's own steps."""
    branches = {
        pk: (trace, seq, step)
        for pk, trace, seq, step in Run.objects.filter(spawned_by_id=run.pk, kind=Run.KIND_BRANCH).values_list(
            "pk", "trace_id", "spawn_seq", "spawn_step"
        )
    }
    if not branches:
        return [], False
    rows = Step.objects.filter(Q(run_id=run.pk) | Q(run__spawned_by_id=run.pk, run__kind=Run.KIND_BRANCH))
    found = []
    for run_id, index, node, started, took in rows.values_list("run_id", "index", "node", "started_at", "duration_ms"):
        trace, seq, step = branches.get(run_id, (run.trace_id, None, None))
        found.append((_finished(started, took), -1 if seq is None else seq, index, trace, node, seq, step))
    found.sort(key=lambda f: (f[0], f[1], f[2]))
    return [
        {"trace_id": trace, "index": index, "node": node, "branch": seq, "spawn_step": step}
        for _, _, index, trace, node, seq, step in found[:limit]
    ], len(found) > limit


# -- the step inspector ---------------------------------------------------------------------------


def join_summary(*, run: Run, activity: dict[str, Any]) -> dict[str, Any] | None:
    """What the join activity of a step joined, from its recorded response: ``{"trace_id", "fanout_step", "mode", "k",
    "errors", "total", "counts", "branches": [{"branch", "trace_id", "status", "start", "error"}], "more"}``
    (the first ``JOINED_SHOWN`` branches). None while it is not answered or its response is unreadable."""
    request: dict[str, Any] = activity["request"] if isinstance(activity.get("request"), dict) else {}
    try:
        response = blob_load(activity.get("response"))
    except BlobUnavailable:
        return None
    if not isinstance(response, list):
        return None
    results = [r for r in response if isinstance(r, dict)]
    shown = results[:JOINED_SHOWN]
    starts = dict(
        Run.objects.filter(spawned_by_id=run.pk, trace_id__in=[str(r.get("trace_id")) for r in shown]).values_list(
            "trace_id", "context__start"
        )
    )
    counts = Counter(str(r.get("status")) for r in results)
    return {
        "trace_id": run.trace_id,
        "fanout_step": request.get("fanout_step"),
        "mode": request.get("mode", "all"),
        "k": request.get("k"),
        "errors": request.get("errors", "fail"),
        "total": len(results),
        "counts": sorted(counts.items()),
        "branches": [
            {
                "branch": r.get("branch"),
                "trace_id": str(r.get("trace_id", "")),
                "status": str(r.get("status", "")),
                "start": starts.get(str(r.get("trace_id")), ""),
                "error": str(r.get("error") or ""),
            }
            for r in shown
        ],
        "more": max(len(results) - len(shown), 0),
    }


def branch_place(*, run: Run) -> dict[str, Any] | None:
    """For a branch's step inspector: which branch of which fan-out of which run (``spawner``)."""
    if run.kind != Run.KIND_BRANCH:
        return None
    place = spawner(run=run)
    if place is not None:
        place["own_trace_id"] = run.trace_id
    return place


# -- the run page ---------------------------------------------------------------------------------


def run_composition(*, run: Run, now: dt.datetime) -> dict[str, Any]:
    """Everything composition adds to the run page of ``run``:

    - ``spawner`` (:func:`spawner`), ``fanouts`` (:func:`fanouts`, with their drawn ``lanes``) and
      ``branches_total``, ``children`` and ``children_total`` (:func:`children`);
    - ``lanes``: the timeline as lanes (:func:`lanes`), None for a run that spawned nothing (its page keeps the
      one-lane timeline of its steps);
    - ``order`` and ``order_cut``: its steps and its branches' in commit order (:func:`commit_order`), and
      ``lane_choices``: the branches the player can follow;
    - ``lanes_data``: what the page's script reads from the lanes fragment (order, choices, fan-outs);
    - ``waits``: its own waits (:func:`waits`, as JSON), ``signal``: the signal it waits for (:func:`pending_signal`).
    """
    groups = fanouts(run=run)
    kids, kids_total = children(run=run)
    view = lanes(run=run, now=now, groups=groups, kids=kids, kids_total=kids_total) if groups or kids else None
    order, cut = commit_order(run=run) if groups else ([], False)
    choices = lane_choices(groups)
    return {
        "spawner": spawner(run=run),
        "fanouts": groups,
        "children": kids,
        "children_total": kids_total,
        "branches_total": sum(g["branches"] for g in groups),
        "lanes": view,
        "order": order,
        "order_cut": cut,
        "lane_choices": choices,
        "lanes_data": {
            "order": order,
            "order_cut": cut,
            "choices": choices,
            "fanouts": [{k: g[k] for k in FANOUT_KEYS} for g in groups],
        },
        "waits": waits_json(waits(run_ids=[run.pk]).get(run.pk, [])),
        "signal": pending_signal(run=run),
    }
