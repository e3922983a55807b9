"""A worker process's run host: runner threads that claim and execute runs.

The Channels consumer only calls :meth:`WorkerHost.wake`; the database says
what to run. Runner threads poll as well, so a lost message delays a run by
at most the poll interval. A keeper thread renews this host's leases and
reads abort requests, so the hot path pays no extra query for either.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid

from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.utils import timezone

from runs.engine import observability as obs
from runs.engine.executor import Executor, Outcome
from runs.engine.plugins import PLUGINS
from runs.services import leases, versions
from runs.services.run_store import DjangoCheckpointer, release_connection

log = logging.getLogger(__name__)
HEARTBEAT_SECONDS = 1.0  # a missing heartbeat is how a dead worker is noticed (CMO_WORKER_DEAD_SECONDS)


def make_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


# How often a worker works out which graph versions its code serves (for its heartbeat, the dashboard).
SERVES_EVERY_SECONDS = 10.0

class WorkerHost:
    def __init__(
        self,
        *,
        concurrency: int | None = None,
        poll_seconds: float | None = None,
        lease_seconds: float | None = None,
        owner: str | None = None,
        steps_per_slice: int | None = None,
    ):
        self.owner = owner or make_owner()
        self.concurrency = concurrency or settings.CMO_WORKER_CONCURRENCY
        self.poll_seconds = poll_seconds or settings.CMO_POLL_SECONDS
        self.lease_seconds = lease_seconds or settings.CMO_LEASE_SECONDS
        self.steps_per_slice = steps_per_slice or settings.CMO_STEPS_PER_SLICE
        self._wake = threading.Condition()
        self._hints: list[int] = []
        self._held: set[int] = set()
        self._aborts: set[int] = set()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.executed = 0
        self.started_at = timezone.now()
        self._serves_at = float("-inf")  # when the served versions were last worked out
        # The policy an app registered (approvals: the Rego policies), compiled once per host; none is an error.
        self._policy = PLUGINS.policy()

    # -- control --------------------------------------------------------------------

    def start(self) -> None:
        for i in range(self.concurrency):
            t = threading.Thread(target=self._runner, name=f"cmo-runner-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        keeper = threading.Thread(target=self._keeper, name="cmo-lease-keeper", daemon=True)
        keeper.start()
        self._threads.append(keeper)
        if settings.REDIS_URL:
            from runs.worker.replies import ReplyListener

            self._threads.append(ReplyListener(settings.REDIS_URL, self.owner).start(self._stopping))
        log.info("worker %s started with %d runner threads", self.owner, self.concurrency)

    def wake(self, run_id: int | None = None) -> None:
        with self._wake:
            if run_id is not None:
                self._hints.append(run_id)
            self._wake.notify()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the current steps, then release every lease still held."""
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            held = list(self._held)
        for run_id in held:
            leases.lease_release(run_id=run_id, owner=self.owner)
        try:
            leases.worker_gone(owner=self.owner)
        except Exception:  # the row ages out of the dashboard anyway
            log.warning("could not remove the worker's heartbeat row", exc_info=True)
        close_old_connections()
        log.info("worker %s stopped; released %d leases", self.owner, len(held))

    @property
    def held(self) -> set[int]:
        with self._lock:
            return set(self._held)

    # -- threads -----------------------------------------------------------------------

    def _next_hint(self) -> int | None:
        with self._wake:
            return self._hints.pop(0) if self._hints else None

    def _claim(self) -> int | None:
        hint = self._next_hint()
        if hint is not None and leases.run_claim_hinted(
            run_id=hint, owner=self.owner, lease_seconds=self.lease_seconds
        ):
            return hint
        return leases.run_claim_next(owner=self.owner, lease_seconds=self.lease_seconds)

    def _runner(self) -> None:
        checkpointer = DjangoCheckpointer(
            owner=self.owner, lease_seconds=self.lease_seconds, abort_flag=self._abort_flag
        )
        executor = Executor(checkpointer, sleep=self._sleep, should_stop=self._stopping.is_set, policy=self._policy)
        try:
            obs.LOG_FIELDS.set({"worker": self.owner})  # this thread's log lines name the worker
            while not self._stopping.is_set():
                run_id = self._safe_claim()
                if run_id is None:
                    with self._wake:
                        if not self._hints and not self._stopping.is_set():
                            self._wake.wait(self.poll_seconds)
                    continue
                self._execute(executor, run_id)
        finally:
            executor.close()
            connection.close()

    def _safe_claim(self) -> int | None:
        try:
            close_old_connections()
            return self._claim()
        except (OperationalError, InterfaceError) as exc:  # an outage: one line, not a traceback per poll
            log.warning("claiming a run failed, the database is unreachable (%s); retrying in %.1f s",
                        " ".join(str(exc).split()), self.poll_seconds)
        except Exception:
            log.exception("claiming a run failed; retrying in %.1fs", self.poll_seconds)
        finally:
            release_connection()
        connection.close()
        self._stopping.wait(self.poll_seconds)
        return None

    def _execute(self, executor: Executor, run_id: int) -> None:
        with self._lock:
            if run_id in self._held:
                # Another runner of this worker executes it (its lease was released, as a dead worker's
                # would be, and this worker took it again): one executor per run.
                return
            self._held.add(run_id)
        try:
            outcome = executor.run(run_id, max_steps=self.steps_per_slice)
            self.executed += 1
            if outcome is Outcome.YIELDED:
                leases.lease_yield(run_id=run_id, owner=self.owner)
                if not self._stopping.is_set():
                    self.wake()
            log.info("run %s: %s", run_id, outcome.value, extra={"run_id": run_id, "outcome": outcome.value})
        except Exception:
            log.exception("executing run %s failed in the worker; its lease will expire", run_id)
            connection.close()
        finally:
            with self._lock:
                self._held.discard(run_id)
                self._aborts.discard(run_id)

    def _keeper(self) -> None:
        obs.LOG_FIELDS.set({"worker": self.owner})
        interval = min(0.5, self.lease_seconds / 3)  # so a heartbeat is never more than 1.5 s late
        last_renew = 0.0
        last_beat = 0.0
        while not self._stopping.wait(interval):
            held = list(self.held)
            if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                last_beat = time.monotonic()
                self._heartbeat(len(held))
            if not held:
                continue
            try:
                close_old_connections()
                if time.monotonic() - last_renew >= self.lease_seconds / 3:
                    lost = leases.leases_renew(owner=self.owner, run_ids=held, lease_seconds=self.lease_seconds)
                    last_renew = time.monotonic()
                    if lost:
                        log.warning("lost leases on runs %s", sorted(lost))
                aborts = leases.aborts_requested(run_ids=held)
                with self._lock:
                    self._aborts |= aborts
                release_connection()
            except Exception:
                log.exception("lease renewal failed")
                connection.close()

    def _heartbeat(self, in_flight: int) -> None:
        try:
            serves = None
            if time.monotonic() - self._serves_at > SERVES_EVERY_SECONDS:
                serves = versions.served_versions(graph_ids=versions.versions_in_use())
                self._serves_at = time.monotonic()
            leases.worker_heartbeat(
                owner=self.owner,
                concurrency=self.concurrency,
                in_flight=in_flight,
                started_at=self.started_at,
                serves=serves,
            )
        except (OperationalError, InterfaceError) as exc:  # a missed heartbeat only dims a dashboard figure
            log.warning("worker heartbeat failed: %s", " ".join(str(exc).split()))
            connection.close()
        except Exception:
            log.warning("worker heartbeat failed", exc_info=True)
            connection.close()
        finally:
            release_connection()

    def _abort_flag(self, run_id: int) -> bool:
        with self._lock:
            return run_id in self._aborts

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)


_current: WorkerHost | None = None
_current_lock = threading.Lock()


def current_host() -> WorkerHost:
    """This process's host, started on first use (so plain ``runworker cmo.runs`` works too)."""
    global _current
    with _current_lock:
        if _current is None:
            _current = WorkerHost()
            _current.start()
        return _current


def set_current_host(host: WorkerHost | None) -> None:
    global _current
    with _current_lock:
        _current = host
