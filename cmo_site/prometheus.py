"""The Prometheus endpoint (/metrics): figures read from the database at scrape time.

Workers are many processes on many machines, so per-process counters would
each see a fraction; the database sees everything. Each scrape runs a handful
of aggregate queries (grouped counts over indexed columns).

Row counts are exposed as gauges (``cmo_steps_stored`` ...), not counters:
retention deletes old rows, and a counter that goes down reads to Prometheus
as a reset (a spike in ``rate()``).

Access: with ``CMO_METRICS_TOKEN`` set, a request needs ``Authorization: Bearer
<token>`` (or a logged-in staff session). Without it, only loopback clients and
staff sessions get the figures; behind a reverse proxy on the same host every
client looks like loopback, so set the token there (``check --deploy`` warns).
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
from collections.abc import Iterator

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, Max, Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runs.engine import statemachine as sm

log = logging.getLogger(__name__)
LOOPBACK = {"127.0.0.1", "::1"}
# cmo_approvals_expiring_soon counts the pending requests due to expire within this (the alert's horizon).
APPROVAL_EXPIRY_WARNING_SECONDS = 3600.0


class CmoCollector(Collector):
    """Runs, steps, activities, queue, caps, workers, approvals and schedulers, as the database has them now."""

    def collect(self) -> Iterator[Metric]:
        from approvals.selectors import expiring_count, pending_count
        from runs.models import Activity, Run, Step
        from runs.selectors import queue_depth, slot_waits, workers_alive

        runs = GaugeMetricFamily("cmo_runs", "Runs by status.", labels=["status"])
        by_status = dict(Run.objects.order_by().values_list("status").annotate(n=Count("id")))
        for status in sm.STATUSES:
            runs.add_metric([status], by_status.get(status, 0))
        yield runs

        yield GaugeMetricFamily("cmo_steps_stored", "Steps recorded (all runs kept).", value=Step.objects.count())

        activities = GaugeMetricFamily("cmo_activities_stored", "Activities recorded, by type.", labels=["type"])
        errors = GaugeMetricFamily(
            "cmo_activity_errors_stored", "Activities recorded as failed, by type.", labels=["type"]
        )
        totals: dict[str, int] = {}
        failed: dict[str, int] = {}
        for kind, status, n in Activity.objects.order_by().values_list("type", "status").annotate(n=Count("id")):
            totals[kind] = totals.get(kind, 0) + n
            if status == "failed":
                failed[kind] = failed.get(kind, 0) + n
        for kind in sorted(totals):
            activities.add_metric([kind], totals[kind])
            errors.add_metric([kind], failed.get(kind, 0))
        yield activities
        yield errors

        yield GaugeMetricFamily(
            "cmo_queue_depth", "Runs runnable now and not leased (waiting for a worker).", value=queue_depth()
        )
        capped = GaugeMetricFamily(
            "cmo_runs_waiting_on_cap", "PENDING runs held back by their graph's cap.", labels=["graph"]
        )
        keyed = GaugeMetricFamily(
            "cmo_runs_waiting_for_slot",
            "PENDING runs held back by their concurrency key's limit or rate (the 50 keys with most waiting; "
            "a graph's cap is its key-less slot, key = the graph's name).",
            labels=["graph", "key"],
        )
        for wait in sorted(slot_waits(limit=50), key=lambda w: w["key"]):
            keyed.add_metric([wait["graph"], wait["key"]], wait["waiting"])
            if wait["key"] == wait["graph"]:
                capped.add_metric([wait["graph"]], wait["waiting"])
        yield capped
        yield keyed

        in_flight = GaugeMetricFamily(
            "cmo_worker_runs_in_flight", "Runs a worker holds (from its last heartbeat).", labels=["worker"]
        )
        capacity = GaugeMetricFamily("cmo_worker_concurrency", "A worker's runner threads.", labels=["worker"])
        alive = workers_alive()
        for w in alive:
            in_flight.add_metric([w.owner], w.in_flight)
            capacity.add_metric([w.owner], w.concurrency)
        yield in_flight
        yield capacity
        serves = GaugeMetricFamily(
            "cmo_worker_serves",
            "1 for each graph version whose code a worker runs.",
            labels=["worker", "graph", "version"],
        )
        for w in alive:
            for served in w.serves or []:
                name, _, version = str(served).rpartition(" v")
                serves.add_metric([w.owner, name, version], 1)
        yield serves
        by_version = GaugeMetricFamily(
            "cmo_runs_active_by_version",
            "Runs not ended, by graph version and status.",
            labels=["graph", "version", "status"],
        )
        rows = (
            Run.objects.filter(status__in=sm.ACTIVE)
            .order_by()
            .values_list("graph__name", "graph__version", "status")
            .annotate(n=Count("id"))
        )
        for name, version, status, n in rows:
            by_version.add_metric([name, str(version), status], n)
        yield by_version
        yield GaugeMetricFamily("cmo_workers_alive", "Workers seen in the last 30 s.", value=len(alive))

        yield GaugeMetricFamily(
            "cmo_approvals_pending", "Approval requests waiting for a decision.", value=pending_count()
        )
        yield GaugeMetricFamily(
            "cmo_approvals_expiring_soon",
            f"Approval requests waiting for a decision that expire within {APPROVAL_EXPIRY_WARNING_SECONDS:.0f} s.",
            value=expiring_count(within_seconds=APPROVAL_EXPIRY_WARNING_SECONDS),
        )
        yield from self._scheduler()
        yield from self._specialist_streams()
        yield from self._llm()

    @staticmethod
    def _llm() -> Iterator[Metric]:
        """Model calls, tokens and cost by graph, provider and model: true counters, because the daily rows
        they sum are never deleted with runs (runs.llm.usage)."""
        from runs.llm.usage import usage_totals

        labels = ["graph", "provider", "model"]
        calls = CounterMetricFamily("cmo_llm_calls", "Model calls recorded as completed.", labels=labels)
        tokens = CounterMetricFamily(
            "cmo_llm_tokens", "Model tokens, by direction (input includes cached).", labels=[*labels, "direction"]
        )
        cost = CounterMetricFamily("cmo_llm_cost_usd", "Model cost in USD, from the price tables.", labels=labels)
        for row in usage_totals():
            key = [row["graph_name"], row["provider"], row["model"]]
            calls.add_metric(key, row["calls"])
            for direction in ("input", "output", "cached"):
                tokens.add_metric([*key, direction], row[f"{direction}_tokens"])
            cost.add_metric(key, row["cost_usd"])
        yield calls
        yield tokens
        yield cost

    @staticmethod
    def _scheduler() -> Iterator[Metric]:
        """The latest sweep any scheduler finished (0 when none ever did) and how many swept in the last minute."""
        from runs.models import SchedulerStatus

        since = timezone.now() - dt.timedelta(seconds=60)
        figures = SchedulerStatus.objects.aggregate(
            last=Max("last_sweep_at"), alive=Count("id", filter=Q(last_sweep_at__gte=since))
        )
        last = figures["last"]
        yield GaugeMetricFamily(
            "cmo_scheduler_last_sweep_timestamp_seconds",
            "Unix time of the latest sweep a scheduler finished (0: none yet).",
            value=last.timestamp() if last else 0,
        )
        yield GaugeMetricFamily(
            "cmo_schedulers_alive", "Schedulers that finished a sweep in the last 60 s.", value=figures["alive"]
        )

    @staticmethod
    def _specialist_streams() -> Iterator[Metric]:
        """Per Redis specialist: stream depth, unacknowledged, DLQ, invocations in flight and held over the cap."""
        from runs.models import Specialist
        from runs.specialists.registry import specialist_stream_stats

        names = list(Specialist.objects.filter(transport=Specialist.TRANSPORT_REDIS).values_list("name", flat=True))
        stats = specialist_stream_stats(names=names)
        families = {
            "depth": GaugeMetricFamily(
                "cmo_specialist_stream_depth", "Messages in a specialist's stream.", labels=["specialist"]
            ),
            "pending": GaugeMetricFamily(
                "cmo_specialist_stream_pending", "Messages read and not yet acknowledged.", labels=["specialist"]
            ),
            "dlq": GaugeMetricFamily(
                "cmo_specialist_dead_letters", "Messages in the dead-letter stream.", labels=["specialist"]
            ),
            "in_flight": GaugeMetricFamily(
                "cmo_specialist_in_flight", "Invocations awaiting an answer.", labels=["specialist"]
            ),
            "held": GaugeMetricFamily(
                "cmo_specialist_held",
                "Invocations held over the specialist's cap (runs waiting on it).",
                labels=["specialist"],
            ),
        }
        for name, figures in sorted(stats.items()):
            for key, family in families.items():
                family.add_metric([name], figures[key])
        yield from families.values()


def build_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CmoCollector())
    return registry


REGISTRY = build_registry()


def metrics_allowed(request: HttpRequest) -> bool:
    """The access rule in the module docstring."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.is_staff:
        return True
    token = settings.CMO_METRICS_TOKEN
    if token:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())
    return request.META.get("REMOTE_ADDR", "") in LOOPBACK


@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    if not metrics_allowed(request):
        response = HttpResponse("metrics need a bearer token (CMO_METRICS_TOKEN)\n", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    try:
        body = generate_latest(REGISTRY)
    except DatabaseError as exc:
        log.warning("metrics scrape failed: the database is unavailable (%s)", exc)
        return HttpResponse("the database is unavailable\n", status=503, content_type="text/plain")
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
