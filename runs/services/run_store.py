"""The engine's Checkpointer over the Django ORM, fenced by the worker's lease.

Every write that advances a run is conditional on ``lease_owner = self.owner``:
a worker that lost its lease (it stalled past expiry and another took over)
gets LeaseLost and its transaction rolls back, so two workers never both
commit a step of one run.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from cmo_site.shared import live
from runs.engine import statemachine as sm
from runs.engine.delta import apply, encode
from runs.engine.errors import CheckpointUnavailable, LeaseLost
from runs.engine.stores import (
    ACTIVITY_COMPLETED,
    ACTIVITY_PENDING,
    ActivityRecord,
    RunSnapshot,
    StepRecord,
    StepWarning,
)
from runs.llm.usage import usage_add
from runs.models import Activity, Run, RunEvent, Step
from runs.services.blobs import blob_load, blob_store
from runs.services.events import event_announce, run_event_add, run_transition
from runs.services.spawn import branches_create

log = logging.getLogger(__name__)
T = TypeVar("T")
# A full snapshot at least this often keeps replay-to-step at two queries and a few deltas.
SNAPSHOT_EVERY = 32
_RETRYABLE = (OperationalError, InterfaceError)


def with_db_retry(write: Callable[[], T], *, attempts: int = 30, first_delay: float = 0.2) -> T:
    """Run ``write`` again after a lost database connection (a restart, a failover).

    Only outside an enclosing transaction: inside one, the caller's transaction is lost anyway.
    Waits up to about a minute in all before giving up.
    """
    delay = first_delay
    for attempt in range(attempts):
        try:
            return write()
        except _RETRYABLE:
            if connection.in_atomic_block or attempt == attempts - 1:
                raise
            log.warning("database unavailable; retrying in %.1fs", delay)
            connection.close()
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
    raise AssertionError("unreachable")


_STEP_COMMIT_SQL = """
WITH held AS (
    UPDATE runs_run
       SET step_index = %s, node = %s, attempt = 1, updated_at = %s, not_before = NULL, crash_count = 0
     WHERE id = %s AND lease_owner = %s AND status = 'RUNNING'
 RETURNING id
)
INSERT INTO runs_step (run_id, index, node, attempt, state, state_delta, state_size, state_hash, input_hash,
                       output, output_hash, edge, started_at, duration_ms, error, code_hash)
SELECT held.id, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s FROM held
"""


# run_transition(target=RUNNING) for a PENDING run we hold, as one statement (DjangoCheckpointer.start).
_START_SQL = """
WITH moved AS (
    UPDATE runs_run
       SET status = 'RUNNING', updated_at = %s, started_at = COALESCE(started_at, %s), last_worker = %s,
           wait_reason = ''
     WHERE id = %s AND lease_owner = %s AND status = 'PENDING'
 RETURNING id, step_index
)
INSERT INTO runs_runevent (run_id, kind, from_status, to_status, step, message, detail, actor, created_at)
SELECT id, 'status', 'PENDING', 'RUNNING', step_index, 'started', %s::jsonb, '', %s FROM moved
RETURNING id
"""


# A run's last step (no fan-out): the run's end fenced by the lease, the step row and the status event.
_LAST_STEP_COMMIT_SQL = """
WITH held AS (
    UPDATE runs_run
       SET step_index = %s, node = %s, attempt = 1, updated_at = %s, not_before = NULL, crash_count = 0,
           status = %s, finished_at = %s, lease_owner = '', lease_expires_at = NULL, state = %s::jsonb, error = %s
     WHERE id = %s AND lease_owner = %s AND status = 'RUNNING'
 RETURNING id
), step AS (
    INSERT INTO runs_step (run_id, index, node, attempt, state, state_delta, state_size, state_hash, input_hash,
                           output, output_hash, edge, started_at, duration_ms, error, code_hash)
    SELECT held.id, %s, %s, %s, %s::jsonb, %s::jsonb, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s FROM held
    RETURNING run_id
)
INSERT INTO runs_runevent (run_id, kind, from_status, to_status, step, message, detail, actor, created_at)
SELECT run_id, 'status', 'RUNNING', %s, %s, %s, '{}'::jsonb, '', %s FROM step
RETURNING id
"""


def _json_param(value: Any) -> str | None:
    """JSONField semantics: Python None is SQL NULL (as Django stores it), anything else is JSON text."""
    return None if value is None else json.dumps(value, separators=(",", ":"))


def step_state(*, run_id: int, index: int) -> Any:
    """The state after step ``index``: the nearest snapshot at or before it plus the deltas after that.

    Two queries whatever the run's length (snapshots are at most CHECKPOINT_SNAPSHOT_EVERY steps apart).
    Raises Step.DoesNotExist when the run has no such step.
    """
    base = (
        Step.objects.filter(run_id=run_id, index__lte=index, state_delta__isnull=True)
        .order_by("-index")
        .values_list("index", "state")
        .first()
    )
    if base is None:
        raise Step.DoesNotExist(f"run {run_id} has no step {index}")
    base_index, state = base
    deltas = list(
        Step.objects.filter(run_id=run_id, index__gt=base_index, index__lte=index)
        .order_by("index")
        .values_list("index", "state_delta")
    )
    if base_index != index and (not deltas or deltas[-1][0] != index):
        raise Step.DoesNotExist(f"run {run_id} has no step {index}")
    state = apply(state, [])
    for _, ops in deltas:
        state = apply(state, ops or [], in_place=True)
    return state


def step_states(*, run_id: int) -> dict[int, Any]:
    """Every step's state, reconstructed in one pass over the run's steps."""
    states: dict[int, Any] = {}
    current: Any = None
    for index, state, delta in (
        Step.objects.filter(run_id=run_id).order_by("index").values_list("index", "state", "state_delta")
    ):
        current = apply(state, []) if delta is None else apply(current, delta)
        states[index] = current
    return states


def run_snapshot(run: Run, *, state: Any) -> RunSnapshot:
    """The engine's view of a run at its current position, with ``state`` as the state there."""
    return RunSnapshot(
        run_id=run.pk,
        trace_id=run.trace_id,
        graph_name=run.graph.name,
        graph_version=run.graph.version,
        definition=run.graph.definition,
        node_hashes=run.graph.node_hashes,
        seed=run.seed,
        status=run.status,
        step_index=run.step_index,
        node=run.node,
        state=state,
        attempt=run.attempt,
        deadline=run.deadline_at,
        max_steps=run.max_steps,
        context=run.context,
        until_node=run.until_node,
    )


def activity_record(row: Activity) -> ActivityRecord:
    """The engine's view of a stored activity (blob references resolved)."""
    return ActivityRecord(
        step=row.step,
        seq=row.seq,
        type=row.type,
        request=row.request,
        request_hash=row.request_hash,
        status=row.status,
        response=blob_load(row.response),
        error=row.error,
        duration_ms=row.duration_ms,
        attempt=row.attempt,
    )


def release_connection() -> None:
    """Give a pooled connection back between writes, so an idle or waiting runner holds none.

    A no-op without a pool (SQLite, CMO_DB_POOL_SIZE=0) and inside a transaction.
    """
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()


def _resilient(method: Callable[..., T]) -> Callable[..., T]:
    """Retry a checkpointer call across a lost connection; past that, CheckpointUnavailable.

    CheckpointUnavailable abandons the step (nothing is committed for it), so
    a database outage never turns into a failed run; the lease then expires
    and the run resumes on a worker that can reach the database.
    """

    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return with_db_retry(lambda: method(*args, **kwargs))
        except _RETRYABLE as exc:
            raise CheckpointUnavailable(f"the database is unreachable: {exc}") from exc
        finally:
            release_connection()

    return wrapper


class DjangoCheckpointer:
    def __init__(
        self, *, owner: str, lease_seconds: float | None = None, abort_flag: Callable[[int], bool] | None = None
    ):
        self.owner = owner
        self.lease = dt.timedelta(seconds=lease_seconds or settings.CMO_LEASE_SECONDS)
        self._abort_flag = abort_flag
        # run id -> (index, state) of the last step row this checkpointer knows, the base of the next delta
        self._last: dict[int, tuple[int, Any]] = {}

    def now(self) -> dt.datetime:
        return timezone.now()

    @_resilient
    def load(self, run_id: int) -> RunSnapshot:
        run = Run.objects.select_related("graph").get(pk=run_id)
        state = run.state
        self._last.pop(run_id, None)
        if run.step_index > 0:
            try:
                state = step_state(run_id=run_id, index=run.step_index - 1)
                self._last[run_id] = (run.step_index - 1, state)
            except Step.DoesNotExist:
                pass  # a fork starts past steps it does not own; its state is run.state
        return run_snapshot(run, state=state)

    @_resilient
    def start(self, run_id: int) -> None:
        if self._start_pending_one_statement(run_id):
            return
        run = Run.objects.only("status", "lease_owner", "last_worker", "wait_reason").get(pk=run_id)
        if run.lease_owner != self.owner:
            raise LeaseLost(f"run {run_id} is not leased to {self.owner}")
        if run.status == sm.PENDING:
            run_transition(
                run_id=run_id,
                target=sm.RUNNING,
                expect_owner=self.owner,
                message="started",
                detail={"worker": self.owner},
                extra={"last_worker": self.owner, "wait_reason": ""},
            )
        elif run.last_worker != self.owner:
            # A worker taking over (after a crash, a shutdown or a slice elsewhere); a slice
            # continued by the same worker is not news.
            Run.objects.filter(pk=run_id).update(last_worker=self.owner, wait_reason="")
            run_event_add(
                run_id=run_id,
                kind="resumed",
                message=f"resumed by {self.owner}",
                detail={"worker": self.owner, "previous_worker": run.last_worker},
            )
        elif run.wait_reason:  # e.g. a version wait another worker noted while this one was between slices
            Run.objects.filter(pk=run_id).update(wait_reason="")

    def _start_pending_one_statement(self, run_id: int) -> bool:
        """PENDING -> RUNNING with its "started" event in one statement (PostgreSQL, outside a transaction),
        fenced by the lease like the step commit; False when the run is not a PENDING run leased to us (or
        on SQLite), and :meth:`start` goes the general way."""
        if connection.vendor != "postgresql" or connection.in_atomic_block:
            return False
        now = timezone.now()
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            cur.execute(
                _START_SQL,
                [now, now, self.owner, run_id, self.owner, _json_param({"worker": self.owner}), now],
                prepare=True,
            )
            row = cur.fetchone()
        if row is None:
            return False
        event_announce(run_id=run_id, event_id=int(row[0]), kind="status", to_status=sm.RUNNING)
        return True

    @_resilient
    def activities(self, run_id: int, step: int) -> dict[int, ActivityRecord]:
        return {row.seq: activity_record(row) for row in Activity.objects.filter(run_id=run_id, step=step)}

    @_resilient
    def put_activity(self, run_id: int, record: ActivityRecord) -> ActivityRecord:
        usage = record.usage if record.status == ACTIVITY_COMPLETED else None
        try:
            with transaction.atomic() if usage else nullcontext():
                Activity.objects.create(
                    run_id=run_id,
                    step=record.step,
                    seq=record.seq,
                    type=record.type,
                    request=record.request,
                    request_hash=record.request_hash,
                    status=record.status,
                    response=blob_store(record.response),
                    error=record.error,
                    duration_ms=record.duration_ms,
                    attempt=record.attempt,
                    tokens=int(usage.get("tokens", 0)) if usage else 0,
                    cost_usd=float(usage.get("cost_usd", 0.0)) if usage else 0.0,
                )
                if usage:
                    usage_add(run_id=run_id, usage=usage)  # the run's totals and the day's, with the record
        except IntegrityError:
            # Another executor recorded this seq first; its record is the truth.
            return activity_record(Activity.objects.get(run_id=run_id, step=record.step, seq=record.seq))
        return record

    def commit_step(
        self, run_id: int, step: StepRecord, *, next_node: str | None, final_status: str | None, error: str = ""
    ) -> None:
        now = timezone.now()
        fields: dict[str, Any] = {
            "step_index": step.index + 1,
            "node": next_node,
            "attempt": 1,
            # No lease bump here: the host's keeper renews leases, and leaving the
            # indexed lease column alone lets PostgreSQL update the run row in place (HOT).
            "updated_at": now,
            "not_before": None,
            "crash_count": 0,  # a committed step ends a run of crashes (runs.services.leases.crash_claimed)
        }
        if final_status is not None:
            fields.update(
                status=final_status,
                finished_at=now,
                lease_owner="",
                lease_expires_at=None,
                state=step.state,
                error=error,
                node=None if final_status == sm.COMPLETED else step.node,
            )
        full, delta = self._encode_state(run_id, step)

        def write() -> None:
            with transaction.atomic():
                Step.objects.create(
                    run_id=run_id,
                    index=step.index,
                    node=step.node,
                    attempt=step.attempt,
                    state=full,
                    state_delta=delta,
                    state_size=step.state_size,
                    state_hash=step.state_hash,
                    input_hash=step.input_hash,
                    output=step.output,
                    output_hash=step.output_hash,
                    edge=step.edge,
                    started_at=step.started_at,
                    duration_ms=step.duration_ms,
                    error=step.error,
                    code_hash=step.code_hash,
                )
                held = Run.objects.filter(pk=run_id, lease_owner=self.owner, status=sm.RUNNING).update(**fields)
                if held != 1:
                    raise LeaseLost(f"run {run_id} lease lost before step {step.index} committed")
                if step.fanout is not None:  # the step and its branches commit together, or neither
                    branches_create(parent_id=run_id, step=step.index, fanout=step.fanout)
                if final_status is not None:
                    run_event_add(
                        run_id=run_id,
                        kind="status",
                        from_status=sm.RUNNING,
                        to_status=final_status,
                        step=step.index,
                        message=error or "finished",
                    )

        try:
            one_statement = step.fanout is None and connection.vendor == "postgresql" and not connection.in_atomic_block
            if one_statement and final_status is None:
                with_db_retry(lambda: self._commit_step_one_statement(run_id, step, full, delta, fields))
            elif one_statement:
                assert final_status is not None
                with_db_retry(lambda: self._commit_last_step_one_statement(run_id, step, full, delta, fields, error))
            else:
                with_db_retry(write)
        except _RETRYABLE as exc:
            raise CheckpointUnavailable(f"the database is unreachable: {exc}") from exc
        except IntegrityError:
            # A retried commit whose first try did commit (the acknowledgement was lost).
            if not Step.objects.filter(run_id=run_id, index=step.index, state_hash=step.state_hash).exists():
                raise LeaseLost(f"step {step.index} of run {run_id} was committed by another worker") from None
        release_connection()
        self._last[run_id] = (step.index, step.state)
        if final_status is not None:
            self._last.pop(run_id, None)
        live.send_on_commit(
            live.run_group(run_id), live.step_message(run_id=run_id, index=step.index, node=step.node), coalesce=True
        )

    def _commit_step_one_statement(
        self, run_id: int, step: StepRecord, full: Any, delta: Any, fields: dict[str, Any]
    ) -> None:
        """The step row and the run's position in one statement, one round trip (PostgreSQL).

        The UPDATE is fenced by the lease and feeds the INSERT, so a worker
        that lost its lease inserts nothing; a single statement is atomic. It is
        sent with server-side parameters as a prepared statement (psycopg's
        extended protocol): planned once per connection, and the state's JSON
        travels as a parameter instead of being quoted into the SQL text.
        """
        connection.ensure_connection()
        # Django's wrapper turns psycopg's errors into django.db's, which the retry and the fences catch.
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            cur.execute(
                _STEP_COMMIT_SQL,
                [
                    fields["step_index"],
                    fields["node"],
                    fields["updated_at"],
                    run_id,
                    self.owner,
                    step.index,
                    step.node,
                    step.attempt,
                    _json_param(full),
                    _json_param(delta),
                    step.state_size,
                    step.state_hash,
                    step.input_hash,
                    _json_param(step.output),
                    step.output_hash,
                    step.edge,
                    step.started_at,
                    step.duration_ms,
                    step.error,
                    step.code_hash,
                ],
                prepare=True,
            )
            if cur.rowcount != 1:
                raise LeaseLost(f"run {run_id} lease lost before step {step.index} committed")

    def _commit_last_step_one_statement(
        self, run_id: int, step: StepRecord, full: Any, delta: Any, fields: dict[str, Any], error: str
    ) -> None:
        """A run's last step, its end and its status event in one statement (PostgreSQL), then what the event's
        commit announces (live pages, the RUN_ENDED hooks). A retry after a lost acknowledgement finds the step
        committed and announces it again (the hooks and pages are idempotent)."""
        status = fields["status"]
        message = error or "finished"
        connection.ensure_connection()
        with connection.wrap_database_errors, psycopg.Cursor(connection.connection) as cur:
            cur.execute(
                _LAST_STEP_COMMIT_SQL,
                [
                    fields["step_index"], fields["node"], fields["updated_at"], status, fields["finished_at"],
                    _json_param(step.state), fields["error"], run_id, self.owner,
                    step.index, step.node, step.attempt, _json_param(full), _json_param(delta), step.state_size,
                    step.state_hash, step.input_hash, _json_param(step.output), step.output_hash, step.edge,
                    step.started_at, step.duration_ms, step.error, step.code_hash,
                    status, step.index, message, fields["updated_at"],
                ],
                prepare=True,
            )  # fmt: skip
            row = cur.fetchone()
        if row is None:
            committed = Step.objects.filter(run_id=run_id, index=step.index, state_hash=step.state_hash).exists()
            event = RunEvent.objects.filter(run_id=run_id, kind="status", to_status=status).order_by("-id").first()
            if not committed or event is None:
                raise LeaseLost(f"run {run_id} lease lost before step {step.index} committed")
            row = (event.pk,)
        event_announce(run_id=run_id, event_id=int(row[0]), kind="status", to_status=status)

    def _encode_state(self, run_id: int, step: StepRecord) -> tuple[Any, Any]:
        """(full state, None) for a snapshot, (None, delta) when a delta from the previous step is much smaller."""
        previous = self._last.get(run_id)
        if previous is None or previous[0] != step.index - 1 or step.index % SNAPSHOT_EVERY == 0:
            return step.state, None
        ops = encode(previous[1], step.state, state_size=step.state_size)
        return (step.state, None) if ops is None else (None, ops)

    @_resilient
    def retry_later(self, run_id: int, *, step: int, attempt: int, error: str, delay: float) -> None:
        now = timezone.now()
        fields: dict[str, Any] = {"attempt": attempt + 1, "updated_at": now}
        if delay > 0:
            later = now + dt.timedelta(seconds=delay)
            fields.update(not_before=later, queued_at=later, lease_owner="", lease_expires_at=None)
        with transaction.atomic():
            failed = list(
                Activity.objects.filter(run_id=run_id, step=step, status="failed").values(
                    "seq", "type", "request", "error"
                )
            )
            Activity.objects.filter(run_id=run_id, step=step, status="failed").delete()
            held = Run.objects.filter(pk=run_id, lease_owner=self.owner).update(**fields)
            if held != 1:
                raise LeaseLost(f"run {run_id} lease lost while scheduling a retry")
            run_event_add(
                run_id=run_id,
                kind="retry",
                step=step,
                message=error,
                detail={
                    "attempt": attempt,
                    "next_attempt": attempt + 1,
                    "delay_seconds": delay,
                    "failed_activities": failed,
                },
            )
        if delay > 0:
            live.run_wake(run_id)

    @_resilient
    def finish(self, run_id: int, status: str, *, error: str = "", detail: dict[str, Any] | None = None) -> None:
        run_transition(
            run_id=run_id,
            target=status,
            expect_owner=self.owner,
            message=error or status.lower(),
            extra={"error": error},
            detail=detail,
        )

    @_resilient
    def suspend(self, run_id: int, *, step: int, reason: str) -> bool:
        with transaction.atomic():
            Run.objects.select_for_update().only("pk").get(pk=run_id)  # serializes with activity_answer
            if not Activity.objects.filter(run_id=run_id, step=step, status=ACTIVITY_PENDING).exists():
                return False
            run_transition(
                run_id=run_id,
                target=sm.WAITING,
                expect_owner=self.owner,
                message=reason,
                extra={"wait_reason": reason, "lease_owner": "", "lease_expires_at": None},
            )
        return True

    @_resilient
    def release_unserved(self, run_id: int, *, reason: str) -> None:
        """Give the run back unexecuted, its wait said on it (once as an event), and have this process's
        claims skip its graph version from now on (runs.services.leases.unserved_add)."""
        from runs.services.leases import unserved_add

        row = Run.objects.filter(pk=run_id).values("graph_id", "wait_reason", "step_index").first()
        if row is None:
            return
        unserved_add(row["graph_id"])
        with transaction.atomic():
            released = Run.objects.filter(pk=run_id, lease_owner=self.owner).update(
                lease_owner="", lease_expires_at=None, wait_reason=reason[:2000], updated_at=timezone.now()
            )
            if released and row["wait_reason"] != reason:
                run_event_add(
                    run_id=run_id,
                    kind="version_wait",
                    step=row["step_index"],
                    message=reason,
                    detail={"worker": self.owner},
                )

    @_resilient
    def abort_requested(self, run_id: int) -> bool:
        if self._abort_flag is not None:
            return self._abort_flag(run_id)
        return bool(Run.objects.filter(pk=run_id, abort_requested=True).exists())

    @_resilient
    def add_warnings(self, run_id: int, *, step: int, warnings: list[StepWarning]) -> None:
        with transaction.atomic():
            for warning in warnings:
                run_event_add(
                    run_id=run_id, kind=warning.kind, step=step, message=warning.message, detail=warning.detail
                )
