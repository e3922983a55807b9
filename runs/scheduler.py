"""The scheduler: what it does each sweep (time-outs, the apps' sweep tasks, wake-ups, stale worker rows,
retention) and the loop that sweeps (``cmo_scheduler``, ``cmo_serve``)."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, close_old_connections, connection
from django.db.models import Q
from django.utils import timezone

from cmo_site.shared.live import wake_now
from runs.engine import statemachine as sm
from runs.engine.errors import InvalidTransition
from runs.engine.stores import ACTIVITY_PENDING
from runs.models import Activity, Run, SchedulerStatus, Timer, WorkerStatus
from runs.retention import retention_apply
from runs.services.events import run_transition
from runs.services.leases import runnable
from runs.services.signals import NoPendingActivity, activity_answer

log = logging.getLogger(__name__)


# Work other apps add to every sweep, by the name its count is reported under (approvals registers the
# expiry of pending requests from AppConfig.ready()); each returns how many things it did.
SWEEP_TASKS: dict[str, Callable[[], int]] = {}


def register_sweep_task(name: str, task: Callable[[], int]) -> None:
    SWEEP_TASKS[name] = task


# Work an app plugs into the scheduler's fast tick (every TIMER_POLL_SECONDS, beside the durable timers): what
# must happen within a second of its time, such as a schedule's slot (schedules.apps).
TICK_TASKS: dict[str, Callable[[], int]] = {}


def register_tick_task(name: str, task: Callable[[], int]) -> None:
    TICK_TASKS[name] = task


def sweep(*, batch: int = 500) -> dict[str, int]:
    """Time out overdue runs, run the apps' sweep tasks (SWEEP_TASKS), then wake workers for runnable runs
    (new, orphaned, backoff over, resumed by a task)."""
    close_old_connections()
    now = timezone.now()
    timed_out = 0
    overdue = Run.objects.filter(status__in=[sm.PENDING, sm.WAITING, sm.RUNNING], deadline_at__lt=now).filter(
        Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=now)
    )
    for run_id in overdue.values_list("pk", flat=True)[:batch]:
        try:
            run_transition(
                run_id=run_id,
                target=sm.TIMED_OUT,
                message="run timeout reached",
                actor="scheduler",
                extra={"error": "run timeout reached"},
            )
            timed_out += 1
        except InvalidTransition:
            continue
    done = {name: task() for name, task in SWEEP_TASKS.items()}
    woken = 0
    for run_id in runnable(now).order_by("created_at", "id").values_list("pk", flat=True)[:batch]:
        wake_now(run_id)
        woken += 1
    return {"woken": woken, "timed_out": timed_out, **done}


_retention_lock = threading.Lock()
_retention_last: float | None = None


def retention_tick(*, now: dt.datetime | None = None, force: bool = False) -> dict[str, Any] | None:
    """Apply the retention policy if it is on and its interval (CMO_RETENTION_INTERVAL_SECONDS,
    default hourly) has passed in this process; the counts, or None when it did not run.

    Separate from :func:`sweep` so a slow deletion never delays wake-ups; safe with
    several schedulers (deletion re-checks each run under a row lock).
    """
    global _retention_last
    if not (settings.CMO_RETENTION_DAYS or settings.CMO_RETENTION_FAILED_DAYS):
        return None
    with _retention_lock:
        recent = (
            _retention_last is not None and time.monotonic() - _retention_last < settings.CMO_RETENTION_INTERVAL_SECONDS
        )
        if recent and not force:
            return None
        _retention_last = time.monotonic()
    close_old_connections()
    return retention_apply(
        now=now or timezone.now(),
        keep_days=settings.CMO_RETENTION_DAYS,
        keep_failed_days=settings.CMO_RETENTION_FAILED_DAYS,
    )


# A worker's lease keeper writes its WorkerStatus row every runs.worker.host.HEARTBEAT_SECONDS (1 s); a
# row this old is deleted (its leases were released long before: runs.services.leases.leases_release_dead).
WORKER_STATUS_STALE_SECONDS = 50.0


def worker_status_prune(*, now: dt.datetime | None = None) -> int:
    """Delete the heartbeat rows of workers not seen for WORKER_STATUS_STALE_SECONDS; how many went.

    A worker that is killed (kill -9, OOM, a lost machine) never removes its own
    row, so without this the table only grows. Fifty missed heartbeats is well past
    a slow beat (a keeper held up by a database hiccup or a long GC pause) and past
    the 30 s in which the dashboard and metrics count a worker alive, so no live
    figure changes; and a live worker whose row went anyway recreates it with its
    next heartbeat (an upsert by owner).
    """
    since = (now or timezone.now()) - dt.timedelta(seconds=WORKER_STATUS_STALE_SECONDS)
    deleted, _ = WorkerStatus.objects.filter(last_seen_at__lt=since).delete()
    return deleted


# A scheduler's heartbeat row not written for this long belongs to a process that is gone (its owner names a pid).
SCHEDULER_STATUS_STALE_SECONDS = 24 * 3600.0


def scheduler_heartbeat(*, owner: str, now: dt.datetime | None = None) -> None:
    """Record that ``owner`` finished a sweep now: one UPDATE, and an INSERT on the first round."""
    now = now or timezone.now()
    if not SchedulerStatus.objects.filter(owner=owner).update(last_sweep_at=now):
        SchedulerStatus.objects.get_or_create(owner=owner, defaults={"started_at": now, "last_sweep_at": now})


def scheduler_status_prune(*, now: dt.datetime | None = None) -> int:
    """Delete the heartbeat rows of schedulers gone for SCHEDULER_STATUS_STALE_SECONDS; how many went.

    A stopped scheduler keeps its row until then, so with every scheduler down the last sweep's
    time stays visible (and ages) instead of vanishing from /metrics.
    """
    since = (now or timezone.now()) - dt.timedelta(seconds=SCHEDULER_STATUS_STALE_SECONDS)
    deleted, _ = SchedulerStatus.objects.filter(last_sweep_at__lt=since).delete()
    return deleted


# After a failed round the scheduler waits BACKOFF_FIRST_SECONDS, doubling up to BACKOFF_MAX_SECONDS:
# back within seconds of a database restart, and one log line per half minute in a long outage.
BACKOFF_FIRST_SECONDS = 1.0
BACKOFF_MAX_SECONDS = 30.0
_DATABASE_LOST = (OperationalError, InterfaceError)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _discard_broken_connections() -> None:
    """Drop this thread's connection and, with a pool, every idle pooled one the server no longer answers.

    After a PostgreSQL restart each idle pooled connection is dead; without the
    pool check the next rounds would fail once per dead connection.
    """
    try:
        connection.close()
    except DatabaseError:
        pass  # it is gone either way
    pool = getattr(connection, "pool", None)
    if pool is not None:
        pool.check()


class SchedulerLoop:
    """The scheduler's rounds until ``stop`` is set: :func:`sweep`, :func:`worker_status_prune`, then
    :func:`retention_tick`, every ``interval`` seconds.

    It outlives the database: a lost connection (a restart, a failover, a terminated
    backend) costs one warning line and a wait of BACKOFF_FIRST_SECONDS doubling to
    BACKOFF_MAX_SECONDS, after which the next round runs on fresh connections; so
    timeouts, approval expiry, retention and re-wakes resume by themselves when the
    database is back. Any other error is logged with its traceback and waited out the
    same way. ``report`` gets each successful round's counts. Each successful round is recorded as this
    loop's heartbeat (:func:`scheduler_heartbeat`), which the "scheduler not sweeping" alert watches.
    """

    def __init__(self, *, interval: float, report: Callable[[dict[str, Any]], None] | None = None):
        self.interval = interval
        self.report = report
        self.backoff = 0.0
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def run(self, stop: threading.Event) -> None:
        """Sweep until ``stop``; durable timers fire meanwhile on a thread of their own (TimerLoop)."""
        timers = threading.Thread(target=TimerLoop().run, args=(stop,), name="cmo-timers", daemon=True)
        timers.start()
        while not stop.wait(self.tick()):
            pass
        timers.join(timeout=5)

    def tick(self) -> float:
        """One round; the seconds to wait before the next."""
        try:
            result = self.sweep_round()
            scheduler_heartbeat(owner=self.owner)
        except _DATABASE_LOST as exc:
            wait = self._failed()
            log.warning("scheduler lost the database (%s); reconnecting in %.0f s", _one_line(exc), wait)
            _discard_broken_connections()
            return wait
        except Exception:
            wait = self._failed()
            log.exception("scheduler sweep failed; trying again in %.0f s", wait)
            return wait
        self.backoff = 0.0
        result["retention"] = self.retention()
        if self.report is not None:
            self.report(result)
        return self.interval

    @staticmethod
    def sweep_round() -> dict[str, Any]:
        """:func:`sweep`, :func:`worker_status_prune` and :func:`scheduler_status_prune`, with their counts; a
        database error is raised."""
        return {**sweep(), "workers_pruned": worker_status_prune(), "schedulers_pruned": scheduler_status_prune()}

    def _failed(self) -> float:
        self.backoff = min(self.backoff * 2, BACKOFF_MAX_SECONDS) if self.backoff else BACKOFF_FIRST_SECONDS
        return self.backoff

    @staticmethod
    def retention() -> dict[str, Any] | None:
        """retention_tick, whose failure is logged: it is tried again at its next interval."""
        try:
            return retention_tick()
        except _DATABASE_LOST as exc:
            log.warning("retention lost the database (%s); it is tried again at the next interval", _one_line(exc))
            _discard_broken_connections()
        except Exception:
            log.exception("retention failed; it is tried again at the next interval")
        return None


# -- durable timers -------------------------------------------------------------------------------

# The timer loop looks for due timers this often: a sleeping run wakes within a second of its time.
TIMER_POLL_SECONDS = 0.25
# A due timer whose wait is still unrecorded this long after is marked fired: its step, when it runs
# again, finds the timer due and goes on at once (runs.activities.timers), so nothing waits on the mark.
TIMER_RECORD_GRACE_SECONDS = 60


def timers_fire(*, now: dt.datetime | None = None, batch: int = 500) -> int:
    """Answer the pending activities of the timers that are due (runs.activities.timers); how many fired.

    Safe with several schedulers: an activity is answered once, and a timer whose activity is no longer
    pending (another scheduler fired it, the run was aborted) is just marked fired; one whose wait is
    not recorded yet (the worker is between arming it and suspending) is left for a later round.
    """
    now = now or timezone.now()
    fired = 0
    due = Timer.objects.filter(fired_at__isnull=True, due_at__lte=now).order_by("due_at", "id")
    for timer in due[:batch]:
        activity = (
            Activity.objects.filter(run_id=timer.run_id, step=timer.step, seq=timer.seq).select_related("run").first()
        )
        if activity is None:
            recent = timer.due_at > now - dt.timedelta(seconds=TIMER_RECORD_GRACE_SECONDS)
            if recent and Run.objects.filter(pk=timer.run_id, status__in=sm.ACTIVE).exists():
                continue  # armed, its wait not recorded yet: fired at a later round
        elif activity.status == ACTIVITY_PENDING and activity.run.status in sm.ACTIVE:
            # Answered meanwhile (by another scheduler) is fine: the timer is marked fired either way.
            with contextlib.suppress(NoPendingActivity):
                activity_answer(
                    activity=activity,
                    response={"due_at": timer.due_at.isoformat(), "woke_at": now.isoformat()},
                    actor="timer",
                )
                fired += 1
        Timer.objects.filter(pk=timer.pk).update(fired_at=now)
    return fired


def _tick_tasks() -> None:
    """Each tick task in turn; one that fails is logged and does not hold up the others (or the timers)."""
    for name, task in TICK_TASKS.items():
        try:
            task()
        except _DATABASE_LOST:
            raise
        except Exception:
            log.exception("the scheduler's tick task %r failed; it runs again at the next tick", name)


class TimerLoop:
    """Fire due timers, then the apps' tick tasks (TICK_TASKS), every TIMER_POLL_SECONDS until ``stop``; a lost
    database waits as the sweeps do."""

    def run(self, stop: threading.Event) -> None:
        backoff = 0.0
        while not stop.wait(backoff or TIMER_POLL_SECONDS):
            try:
                close_old_connections()
                timers_fire()
                _tick_tasks()
                backoff = 0.0
            except _DATABASE_LOST as exc:
                backoff = min(backoff * 2, BACKOFF_MAX_SECONDS) if backoff else BACKOFF_FIRST_SECONDS
                log.warning("timers lost the database (%s); reconnecting in %.0f s", _one_line(exc), backoff)
                _discard_broken_connections()
            except Exception:
                backoff = BACKOFF_FIRST_SECONDS
                log.exception("firing timers failed; trying again in %.0f s", backoff)
            finally:
                connection.close()
