"""Save, pause, trigger and backfill schedules, and fire their due slots (the scheduler's tick).

Exactly one run per slot: a slot's ScheduleFire row (unique per schedule and slot) is written in the
transaction that creates its run, so several schedulers, a scheduler killed mid-way or restarted, can
neither lose a slot (the schedule's ``next_slot_at`` moves on in that same transaction) nor start it twice
(a second insert of the slot fails and is skipped). On PostgreSQL the schedule's row is also locked
(SKIP LOCKED) while its slots fire, so two schedulers do not even try the same schedule at once.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from cmo_site.shared.permissions import OPERATE, can, roles_allow, user_roles
from runs.engine import statemachine as sm
from runs.engine.concurrency import KeyPathError, declaration_problems, run_slot
from runs.engine.errors import CMOError
from runs.engine.validation import budget_problem
from runs.models import Graph, Run
from runs.services.graphs import graph_resolve
from runs.services.runs import InvalidInput, run_abort, run_input_check, run_start
from schedules import timing
from schedules.models import Schedule, ScheduleFire

log = logging.getLogger(__name__)

NEXT_SHOWN = 5
MAX_BACKFILL_SLOTS = 1000
MAX_FIRES_PER_TICK = 100  # slots one schedule fires in one tick; a longer catch-up goes on at the next tick
MISSED_COUNT_LIMIT = 100_000  # missed slots are counted up to this many
MIN_CATCHUP_WINDOW_SECONDS = 10
MAX_CATCHUP_WINDOW_SECONDS = 366 * 86400
MAX_JITTER_SECONDS = 3600
TICK_BUDGET_SECONDS = 0.5  # one tick fires schedules for at most this long
TIMING_FIELDS = ("cron", "interval_seconds", "timezone")


class ScheduleInvalid(CMOError, ValueError):
    """A schedule's fields are refused; ``details`` lists ``{"field", "message"}``."""

    status, code = 422, "invalid_schedule"

    def __init__(self, errors: list[dict[str, str]]):
        self.details = errors
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))


class ScheduleExists(CMOError):
    status, code = 409, "schedule_exists"


class BackfillRefused(CMOError, ValueError):
    status, code = 422, "invalid_backfill"


@dataclass(frozen=True)
class Fields:
    """What a schedule is made of, as saved (validated by :func:`schedule_check`)."""

    graph_name: str
    version: int | None
    input: Any
    cron: str
    interval_seconds: int | None
    timezone: str
    jitter_seconds: int
    overlap: str
    catchup: str
    catchup_window_seconds: int
    description: str = ""
    concurrency: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None


# -- reading the clock ----------------------------------------------------------------------------


def slots_from(schedule: Schedule | Fields, start: dt.datetime) -> Any:
    return timing.slots_from(
        cron=schedule.cron, interval_seconds=schedule.interval_seconds, timezone=schedule.timezone, start=start
    )


def next_fire_times(*, schedule: Schedule, now: dt.datetime | None = None, n: int = NEXT_SHOWN) -> list[dt.datetime]:
    """The next ``n`` slots of ``schedule`` (from its next unhandled slot, or from now), jitter included; none
    while it is paused."""
    if schedule.paused:
        return []
    start = schedule.next_slot_at or (now or timezone.now())
    return [slot + _jitter(schedule, slot) for slot in itertools.islice(slots_from(schedule, start), n)]


def _jitter(schedule: Schedule, slot: dt.datetime) -> dt.timedelta:
    return timing.jitter(key=schedule.name, slot=slot, seconds=schedule.jitter_seconds)


def _first_slot_after(schedule: Schedule | Fields, moment: dt.datetime) -> dt.datetime:
    return next(slots_from(schedule, moment + dt.timedelta(microseconds=1)))


# -- saving ---------------------------------------------------------------------------------------


def schedule_check(*, data: dict[str, Any], user: Any, role: str) -> Fields:
    """``data`` (the fields of the API and the form) as Fields, or ScheduleInvalid listing every problem: the
    timing, the policies, the graph and version (which ``user`` must be allowed to run) and the input (checked
    against the graph's input schema as a run's would be). ``role`` is the one ``user`` acts with."""
    errors: list[dict[str, str]] = []
    cron = str(data.get("cron") or "").strip()
    interval = data.get("interval_seconds")
    zone = str(data.get("timezone") or "UTC")
    try:
        timing.check(cron=cron, interval_seconds=interval, timezone=zone)
    except timing.TimingError as exc:
        errors.append({"field": exc.field, "message": str(exc)})
    jitter = int(data.get("jitter_seconds") or 0)
    if not 0 <= jitter <= MAX_JITTER_SECONDS:
        errors.append({"field": "jitter_seconds", "message": f"jitter is 0 to {MAX_JITTER_SECONDS} seconds"})
    elif interval and jitter >= interval:
        errors.append({"field": "jitter_seconds", "message": "jitter must be shorter than the interval"})
    overlap = str(data.get("overlap") or Schedule.SKIP)
    if overlap not in dict(Schedule.OVERLAP_CHOICES):
        errors.append({"field": "overlap", "message": f"one of {', '.join(dict(Schedule.OVERLAP_CHOICES))}"})
    catchup = str(data.get("catchup") or Schedule.CATCHUP_ALL)
    if catchup not in dict(Schedule.CATCHUP_CHOICES):
        errors.append({"field": "catchup", "message": "one of all, latest"})
    window = int(data.get("catchup_window_seconds") or 60)
    if not MIN_CATCHUP_WINDOW_SECONDS <= window <= MAX_CATCHUP_WINDOW_SECONDS:
        errors.append(
            {
                "field": "catchup_window_seconds",
                "message": f"the catch-up window is {MIN_CATCHUP_WINDOW_SECONDS} to {MAX_CATCHUP_WINDOW_SECONDS} s",
            }
        )
    graph_name = str(data.get("graph") or "").strip()
    version = data.get("version")
    concurrency = data.get("concurrency")
    budget = data.get("budget") or None
    problem = budget_problem(budget)
    if problem:
        errors.append({"field": "budget", "message": problem})
    data_in = data.get("input", {})
    try:
        graph = graph_resolve(name=graph_name, version=version)
    except Graph.DoesNotExist as exc:
        errors.append({"field": "graph", "message": str(exc) or f"no graph {graph_name!r}"})
    else:
        try:
            data_in = run_input_check(graph=graph, data=data_in)
        except InvalidInput as exc:
            errors += [{"field": "input" + e["path"].removeprefix("$"), "message": e["message"]} for e in exc.errors]
        else:
            errors += _concurrency_errors(graph_name, concurrency, data_in)
    if not can(user, OPERATE) or not roles_allow({role}, OPERATE):
        errors.append({"field": "owner", "message": "only an operator or an admin owns a schedule"})
    if errors:
        raise ScheduleInvalid(errors)
    return Fields(
        graph_name=graph_name,
        version=version,
        input=data_in,
        cron=cron,
        interval_seconds=interval if not cron else None,
        timezone=zone,
        jitter_seconds=jitter,
        overlap=overlap,
        catchup=catchup,
        catchup_window_seconds=window,
        description=str(data.get("description") or "")[:500],
        concurrency=concurrency,
        budget=budget,
    )


def _concurrency_errors(graph_name: str, declaration: Any, data: Any) -> list[dict[str, str]]:
    """The problems of a schedule's concurrency declaration, including a key its input does not have."""
    problems = declaration_problems(declaration)
    if not problems and declaration is not None:
        try:
            run_slot(graph_name=graph_name, declaration=declaration, data=data)
        except KeyPathError as exc:
            problems = [str(exc)]
    return [{"field": "concurrency", "message": p} for p in problems]


def schedule_create(*, name: str, fields: Fields, user: Any, role: str, paused: bool = False) -> Schedule:
    """A new schedule owned by ``user`` acting as ``role``; its first slot is the first one after now."""
    now = timezone.now()
    try:
        with transaction.atomic():
            return Schedule.objects.create(
                name=name,
                owner=user,
                owner_role=role,
                paused=paused,
                note=f"paused by {user.get_username()}" if paused else "",
                next_slot_at=_first_slot_after(fields, now),
                **fields.__dict__,
            )
    except IntegrityError:
        raise ScheduleExists(f"a schedule named {name!r} exists") from None


def schedule_update(*, schedule: Schedule, fields: Fields, user: Any, role: str) -> Schedule:
    """Change ``schedule``; ``user`` becomes its owner (its runs execute with the rights of whoever set what
    they do). A change of timing starts again from the first slot after now."""
    with transaction.atomic():
        locked = Schedule.objects.select_for_update().get(pk=schedule.pk)
        timing_changed = any(getattr(locked, f) != getattr(fields, f) for f in TIMING_FIELDS)
        for key, value in fields.__dict__.items():
            setattr(locked, key, value)
        locked.owner, locked.owner_role = user, role
        if timing_changed or locked.next_slot_at is None:
            locked.next_slot_at = _first_slot_after(fields, timezone.now())
        locked.save()
    return locked


def schedule_pause(*, schedule: Schedule, user: Any, note: str = "") -> Schedule:
    """Stop firing slots (a buffered run stays buffered); ``note`` says why."""
    who = user.get_username() if user is not None else "the system"
    Schedule.objects.filter(pk=schedule.pk).update(
        paused=True, note=(note or f"paused by {who}")[:500], updated_at=timezone.now()
    )
    schedule.refresh_from_db()
    return schedule


def schedule_resume(*, schedule: Schedule, user: Any) -> Schedule:
    """Fire again from the first slot after now: the slots of the pause are not caught up."""
    next_slot = _first_slot_after(schedule, timezone.now())
    Schedule.objects.filter(pk=schedule.pk).update(
        paused=False, note="", next_slot_at=next_slot, updated_at=timezone.now()
    )
    schedule.refresh_from_db()
    return schedule


# -- firing ---------------------------------------------------------------------------------------


def active_runs(*, schedule: Schedule) -> QuerySet[Run]:
    """The runs of ``schedule`` (started by any of its fires) that have not ended. Reads only its open fires
    and closes those whose run ended (or was deleted), so the look stays small however long its history."""
    open_fires = ScheduleFire.objects.filter(schedule=schedule, open=True)
    ended = open_fires.exclude(run__status__in=sm.ACTIVE)
    if ended.exists():
        ScheduleFire.objects.filter(pk__in=list(ended.values_list("pk", flat=True))).update(open=False)
    return Run.objects.filter(pk__in=open_fires.values("run_id"), status__in=sm.ACTIVE).order_by("pk")


def _owner_refusal(schedule: Schedule) -> str:
    """Why the schedule's own slots may not start runs as its owner now, or ""."""
    owner = schedule.owner
    if owner is None:
        return "the schedule has no owner (the user was deleted); edit it to own it"
    role = schedule.owner_role
    if not owner.is_active or not roles_allow({role}, OPERATE) or role not in user_roles(owner):
        who = owner.get_username()
        return f"its owner {who!r} no longer holds the role {role!r} it was saved with; edit it to own it"
    return ""


def _start(schedule: Schedule, fire: ScheduleFire, user: Any, role: str) -> None:
    """Start the run of ``fire`` as ``user`` with ``role``, or record why not."""
    try:
        run = run_start(
            graph_name=schedule.graph_name,
            version=schedule.version,
            data=schedule.input,
            user=user,
            role=role,
            history={"schedule": schedule.name, "schedule_slot": fire.slot.isoformat(), "schedule_fire": fire.kind},
            concurrency=schedule.concurrency,
            budget=schedule.budget,
        )
    except (Graph.DoesNotExist, CMOError) as exc:
        fire.outcome, fire.reason = ScheduleFire.FAILED, f"the run could not start: {exc}"
    else:
        fire.outcome, fire.run, fire.reason, fire.open = ScheduleFire.STARTED, run, "", True
    fire.actor = user.get_username()
    fire.save()


def _fire(
    schedule: Schedule, slot: dt.datetime, *, kind: str, user: Any, role: str, overlap: str | None = None
) -> str | None:
    """Fire one slot: record it and, by the overlap policy, start its run (as ``user`` with ``role``), buffer,
    skip or cancel the active run first. Its outcome, or None when the slot was already fired (by another
    scheduler)."""
    try:
        with transaction.atomic():
            fire = ScheduleFire.objects.create(schedule=schedule, slot=slot, kind=kind, outcome=ScheduleFire.FAILED)
    except IntegrityError:
        return None
    policy = overlap or schedule.overlap
    active = []
    if policy != Schedule.ALLOW_ALL:
        active = list(active_runs(schedule=schedule).values_list("pk", "trace_id", "status"))
    # A buffered slot starts later as the schedule's owner, so only the schedule's own slots are buffered: a
    # slot someone triggered is skipped instead (it would otherwise run with the owner's rights, not theirs).
    if active and (policy == Schedule.SKIP or (policy == Schedule.BUFFER_ONE and kind != ScheduleFire.SLOT)):
        fire.outcome = ScheduleFire.SKIPPED
        fire.reason = f"run {active[0][1]} of this schedule is still {active[0][2]} (overlap: {policy})"
        fire.save()
        return fire.outcome
    if active and policy == Schedule.BUFFER_ONE:
        buffered = ScheduleFire.objects.filter(schedule=schedule, outcome=ScheduleFire.BUFFERED).exists()
        fire.outcome = ScheduleFire.SKIPPED if buffered else ScheduleFire.BUFFERED
        fire.reason = (
            "a run is already buffered (overlap: buffer one)"
            if buffered
            else f"starts when run {active[0][1]} ends (overlap: buffer one)"
        )
        fire.actor = user.get_username()
        fire.save()
        return fire.outcome
    for pk, _, _ in active:  # cancel_other
        try:
            run_abort(run=Run.objects.get(pk=pk), actor=f"schedule {schedule.name}")
        except sm.InvalidTransition:
            pass  # it ended meanwhile
    _start(schedule, fire, user, role)
    return fire.outcome


def _locked_due(schedule_id: int, now: dt.datetime) -> Schedule | None:
    qs = Schedule.objects.filter(pk=schedule_id, paused=False, next_slot_at__lte=now).select_related("owner")
    if connection.features.has_select_for_update_skip_locked:
        qs = qs.select_for_update(skip_locked=True, of=("self",))
    return qs.first()


def _due_slots(schedule: Schedule, now: dt.datetime) -> tuple[list[dt.datetime], list[dt.datetime], dt.datetime]:
    """The slots to fire now, the missed ones (before the catch-up window; at most a few are listed, see
    MISSED_COUNT_LIMIT) and the next slot not handled."""
    assert schedule.next_slot_at is not None
    window_start = now - dt.timedelta(seconds=schedule.catchup_window_seconds)
    missed: list[dt.datetime] = []
    start = schedule.next_slot_at
    if start < window_start:
        for slot in slots_from(schedule, start):
            if slot >= window_start or len(missed) >= MISSED_COUNT_LIMIT:
                start = slot
                break
            missed.append(slot)
    due: list[dt.datetime] = []
    following = start
    for slot in slots_from(schedule, start):
        following = slot
        if slot + _jitter(schedule, slot) > now or len(due) >= MAX_FIRES_PER_TICK:
            break
        due.append(slot)
    if schedule.catchup == Schedule.CATCHUP_LATEST and len(due) > 1:
        missed += due[:-1]
        due = due[-1:]
    return due, missed, following


def schedule_fire_due(*, schedule_id: int, now: dt.datetime | None = None) -> int:
    """Fire the due slots of one schedule (see the module's docstring); how many slots it handled."""
    now = now or timezone.now()
    with transaction.atomic():
        schedule = _locked_due(schedule_id, now)
        if schedule is None:
            return 0  # not due, paused, or another scheduler holds it
        due, missed, following = _due_slots(schedule, now)
        if missed:
            _record_missed(schedule, missed)
        refusal = _owner_refusal(schedule) if due else ""
        handled = 0
        for slot in due:
            if refusal:
                ScheduleFire.objects.get_or_create(
                    schedule=schedule,
                    slot=slot,
                    defaults={"kind": ScheduleFire.SLOT, "outcome": ScheduleFire.FAILED, "reason": refusal},
                )
                continue
            outcome = _fire(schedule, slot, kind=ScheduleFire.SLOT, user=schedule.owner, role=schedule.owner_role)
            if outcome is not None:
                handled += 1
        Schedule.objects.filter(pk=schedule.pk).update(
            next_slot_at=following, **({"paused": True, "note": f"paused: {refusal}"[:500]} if refusal else {})
        )
    return handled + len(missed)


def _record_missed(schedule: Schedule, missed: list[dt.datetime]) -> None:
    """One row for a run of missed slots, at the last of them (so that slot is never fired later)."""
    more = "or more " if len(missed) >= MISSED_COUNT_LIMIT else ""
    ScheduleFire.objects.get_or_create(
        schedule=schedule,
        slot=missed[-1],
        defaults={
            "kind": ScheduleFire.SLOT,
            "outcome": ScheduleFire.MISSED,
            "reason": (
                f"{len(missed)} {more}slot(s) from {missed[0]:%Y-%m-%d %H:%M:%S} to {missed[-1]:%Y-%m-%d %H:%M:%S} "
                f"UTC not fired (catch-up: {schedule.catchup}, window {schedule.catchup_window_seconds} s)"
            ),
        },
    )


def schedules_fire_due(*, now: dt.datetime | None = None, batch: int = 500) -> int:
    """The scheduler's tick: fire every due schedule's slots (oldest slot first, for at most
    TICK_BUDGET_SECONDS, so the durable timers of the same tick are not held up: the rest fire at the next
    tick, and other schedulers take their share meanwhile), then start buffered runs whose turn came."""
    now = now or timezone.now()
    due = Schedule.objects.filter(paused=False, next_slot_at__lte=now).order_by("next_slot_at")
    handled = 0
    deadline = time.monotonic() + TICK_BUDGET_SECONDS
    for schedule_id in due.values_list("pk", flat=True)[:batch]:
        if time.monotonic() > deadline:
            break
        try:
            handled += schedule_fire_due(schedule_id=schedule_id, now=now)
        except IntegrityError:
            log.exception("schedule %s: a slot could not be recorded; it is tried again at the next tick", schedule_id)
    return handled + buffered_start()


def buffered_start(*, batch: int = 100) -> int:
    """Start each buffered slot whose schedule has no active run any more (as its owner); how many started."""
    started = 0
    waiting = ScheduleFire.objects.filter(outcome=ScheduleFire.BUFFERED, schedule__paused=False).order_by("slot")
    for fire_id in waiting.values_list("pk", flat=True)[:batch]:
        with transaction.atomic():
            qs = ScheduleFire.objects.filter(pk=fire_id, outcome=ScheduleFire.BUFFERED).select_related(
                "schedule__owner"
            )
            if connection.features.has_select_for_update_skip_locked:
                qs = qs.select_for_update(skip_locked=True, of=("self",))
            fire = qs.first()
            if fire is None or active_runs(schedule=fire.schedule).exists():
                continue
            refusal = _owner_refusal(fire.schedule)
            if refusal:
                fire.outcome, fire.reason = ScheduleFire.FAILED, refusal
                fire.save()
                continue
            _start(fire.schedule, fire, fire.schedule.owner, fire.schedule.owner_role)
            started += fire.outcome == ScheduleFire.STARTED
    return started


# -- by hand --------------------------------------------------------------------------------------


def schedule_trigger(*, schedule: Schedule, user: Any, role: str) -> ScheduleFire:
    """Fire a slot now, by ``user`` (the run executes as ``user`` with ``role``), under the overlap policy."""
    now = timezone.now()
    with transaction.atomic():
        _fire(schedule, now, kind=ScheduleFire.TRIGGER, user=user, role=role)
    return ScheduleFire.objects.select_related("run").get(schedule=schedule, slot=now)


def schedule_backfill(
    *, schedule: Schedule, start: dt.datetime, end: dt.datetime, user: Any, role: str
) -> dict[str, int]:
    """Fire every slot from ``start`` to ``end`` (both included, at most MAX_BACKFILL_SLOTS, none in the future)
    as ``user``, each run started whatever is active (a backfill is asked for); a slot that already has a fire
    is left as it is. Counts: ``{"started", "failed", "already"}``."""
    now = timezone.now()
    if start.tzinfo is None or end.tzinfo is None:
        raise BackfillRefused("start and end need a time zone (e.g. 2026-12-01T00:00:00Z)")
    if end < start:
        raise BackfillRefused("end is before start")
    if end > now:
        raise BackfillRefused("a backfill ends at the latest now: later slots fire on their own")
    ahead = itertools.islice(slots_from(schedule, start), MAX_BACKFILL_SLOTS + 1)
    slots = list(itertools.takewhile(lambda s: s <= end, ahead))
    if len(slots) > MAX_BACKFILL_SLOTS:
        raise BackfillRefused(f"the range holds more than {MAX_BACKFILL_SLOTS} slots; backfill it in parts")
    counts = {"started": 0, "failed": 0, "already": 0}
    with transaction.atomic():
        for slot in slots:
            outcome = _fire(
                schedule, slot, kind=ScheduleFire.BACKFILL, user=user, role=role, overlap=Schedule.ALLOW_ALL
            )
            key = "already" if outcome is None else ("started" if outcome == ScheduleFire.STARTED else "failed")
            counts[key] += 1
    return counts


_pruned_at = [-3600.0]  # monotonic time of this process's last prune
PRUNE_EVERY_SECONDS = 3600
PRUNE_BATCH = 10_000


def fires_prune(*, now: dt.datetime | None = None) -> int:
    """Delete closed fires older than CMO_TRIGGER_HISTORY_DAYS (their runs stay), at most hourly and
    PRUNE_BATCH a time (a scheduler sweep task); how many went."""
    if time.monotonic() - _pruned_at[0] < PRUNE_EVERY_SECONDS:
        return 0
    _pruned_at[0] = time.monotonic()
    cutoff = (now or timezone.now()) - dt.timedelta(days=settings.CMO_TRIGGER_HISTORY_DAYS)
    old = ScheduleFire.objects.filter(open=False, slot__lt=cutoff).exclude(outcome=ScheduleFire.BUFFERED)
    deleted, _ = ScheduleFire.objects.filter(pk__in=list(old.values_list("pk", flat=True)[:PRUNE_BATCH])).delete()
    return deleted
