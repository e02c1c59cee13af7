"""Prometheus metrics of one app: its own registry, no process-global collectors.

Request counts and latencies are observed by a middleware. Events by outcome, task
runs by type and outcome, step and task latencies and AI decisions are the engine
loop's :class:`~statefleet.engine.runtime.tally.Tally` (what every shard and pool
counted, wherever it ran, carried home in its replies) when this process runs the
engine: ``statefleet up``, ``statefleet worker``, ``statefleet api --allow-memory``.
A process that runs no engine (``statefleet api`` beside workers) shows instead the sum
of every engine's stored tally (``engine_tallies``, flushed by each engine loop every
``STATEFLEET_METRICS_FLUSH_MS``: see ``engine/runtime/tally_store.py``), read when
scraped: the whole cluster's work, a flush interval behind (one query per scrape).
Engine-wide numbers (instances and tasks by status, outbox lag, queue depth per queue)
are read from Postgres and the queue when scraped, in every process.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator, Mapping
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from statefleet.engine.ports.queue import ORCHESTRATOR_QUEUE, TASK_RUNNER_QUEUE, Queue
from statefleet.engine.runtime.tally import BUCKETS, Tally
from statefleet.engine.runtime.tally import Histogram as TallyHistogram
from statefleet.engine.runtime.tally_store import cluster_tally
from statefleet.engine.store.queries import parse_queries

__all__ = ["ApiMetrics", "MetricsMiddleware"]

# Scrape-time reads; small and API-only, so kept beside the metrics they feed.
_SQL = parse_queries(
    """
-- name: instances_by_status
SELECT status, count(*) AS n FROM workflow_instances GROUP BY status;
-- name: tasks_by_status
SELECT status, count(*) AS n FROM tasks GROUP BY status;
-- name: outbox_lag
SELECT coalesce(extract(epoch FROM now() - min(available_at)), 0)::float8 AS lag
FROM outbox WHERE published_at IS NULL AND NOT held AND available_at <= now();
-- name: held
-- Work waiting for the admitter (docs/scheduling.md): not lag, a queue kept in Postgres.
SELECT 'event' AS kind, count(*) AS n FROM outbox WHERE held AND published_at IS NULL
UNION ALL
SELECT 'task', count(*) FROM tasks WHERE held AND status = 'pending';
-- name: throttled
-- Due tasks waiting under a limit (their spec's, or their tenant's for their type or "*").
SELECT t.type, count(*) AS n
FROM tasks t LEFT JOIN tenants tn ON tn.tenant_id = t.tenant_id
WHERE t.held AND t.status = 'pending' AND t.run_at <= now()
  AND (t.limit_key IS NOT NULL
       OR coalesce(tn.settings -> 'scheduling' -> 'taskLimits' ?| ARRAY[t.type, '*'], false))
GROUP BY t.type;
""",
    source="statefleet.api.metrics",
)


def _buckets(histogram: TallyHistogram) -> list[tuple[str, float]]:
    """Prometheus' cumulative ``(le, count)`` pairs of a tally histogram."""
    bounds = [*(str(b) for b in BUCKETS), "+Inf"]
    return list(zip(bounds, itertools.accumulate(histogram.buckets), strict=True))


def _counter(
    name: str, documentation: str, labels: list[str], counts: Mapping[Any, int]
) -> CounterMetricFamily:
    """A counter family with one sample per key of ``counts`` (a label value, or a tuple
    of them), in key order."""
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, count in sorted(counts.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], count)
    return family


class _EngineCollector(Collector):
    """The engine loop's tally (or the cluster's) as Prometheus families, at each scrape."""

    def __init__(self, metrics: ApiMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        tally = self._metrics.tally or self._metrics.cluster or Tally()
        yield _counter(
            "statefleet_events",
            "Events handled by the shards of this process's engine loop (of all engines "
            "when it runs none), by outcome",
            ["outcome"],
            tally.events,
        )
        step = HistogramMetricFamily(
            "statefleet_step_batch_seconds",
            "Time to apply and commit one batch of events (group commit)",
        )
        step.add_metric([], _buckets(tally.step), tally.step.total)
        yield step
        yield _counter(
            "statefleet_task_runs",
            "Task jobs handled by the pools of this process's engine loop (of all engines "
            "when it runs none), by type and outcome",
            ["type", "outcome"],
            tally.task_runs,
        )
        seconds = HistogramMetricFamily(
            "statefleet_task_run_seconds",
            "Time to claim, run and finish one task attempt, by task type",
            labels=["type"],
        )
        for task_type, histogram in sorted(tally.task_seconds.items()):
            seconds.add_metric([task_type], _buckets(histogram), histogram.total)
        yield seconds
        yield _counter(
            "statefleet_ai_decisions",
            "AI task decisions by outcome: emitted, rejected (by the policy), withheld",
            ["outcome"],
            tally.ai_decisions,
        )
        yield _counter(
            "statefleet_admission_deferred",
            "Due tasks an admission pass left waiting because of a concurrency or rate "
            "limit, by task type (once per pass that finds them waiting: how long limits "
            "held work back; statefleet_tasks_throttled is how many wait now)",
            ["type"],
            tally.throttled,
        )
        yield _counter(
            "statefleet_admitted",
            "Held work (below the interactive priority, or limited) the admitter handed "
            "to shards and pools, by kind: event, task",
            ["kind"],
            tally.admitted,
        )


class ApiMetrics:
    def __init__(self, tally: Tally | None = None) -> None:
        #: The engine loop's tally when this process runs the engine, else None.
        self.tally = tally
        #: Without one: the sum of all engines' stored tallies, as of the last scrape.
        self.cluster: Tally | None = None
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_EngineCollector(self))
        self.requests = Counter(
            "statefleet_http_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "statefleet_http_request_seconds",
            "HTTP request latency by route template",
            ["route", "method"],
            registry=self.registry,
            # Up to minutes: a request stuck behind a lock must show as such, not vanish
            # into +Inf next to the merely slow ones.
            buckets=(*Histogram.DEFAULT_BUCKETS[:-1], 30.0, 60.0, 120.0, 300.0, float("inf")),
        )
        self.instances = Gauge(
            "statefleet_instances",
            "Instances by status (all tenants)",
            ["status"],
            registry=self.registry,
        )
        self.tasks = Gauge(
            "statefleet_tasks",
            "Tasks and timers by status (all tenants)",
            ["status"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "statefleet_queue_depth",
            "Jobs waiting, delayed or in flight per queue (drivers that can tell)",
            ["queue"],
            registry=self.registry,
        )
        self.queue_lag = Gauge(
            "statefleet_outbox_lag_seconds",
            "Age of the oldest due, unpublished outbox job (0 when none; held work is "
            "not counted: it waits for the admitter by design)",
            registry=self.registry,
        )
        self.throttled = Gauge(
            "statefleet_tasks_throttled",
            "Tasks due and waiting under a concurrency or rate limit, by task type "
            "(docs/scheduling.md): held back, never dropped",
            ["type"],
            registry=self.registry,
        )
        self.held = Gauge(
            "statefleet_held",
            "Work waiting in Postgres for the admitter, by kind: event (a batch's starts), "
            "task (tasks below the interactive priority or under a limit)",
            ["kind"],
            registry=self.registry,
        )

    async def render(self, pool: asyncpg.Pool[Any], queue: Queue | None = None) -> bytes:
        """The exposition text, after refreshing the gauges read from Postgres and the
        queue (``depth(queue_name)``, where the driver has it)."""
        depth = getattr(queue, "depth", None)
        if depth is not None:
            for name in (ORCHESTRATOR_QUEUE, TASK_RUNNER_QUEUE):
                self.queue_depth.labels(name).set(await depth(name))
        async with pool.acquire() as connection:
            for gauge, query in (
                (self.instances, "instances_by_status"),
                (self.tasks, "tasks_by_status"),
            ):
                gauge.clear()
                for row in await connection.fetch(_SQL[query]):
                    gauge.labels(row["status"]).set(row["n"])
            self.queue_lag.set(await connection.fetchval(_SQL["outbox_lag"]))
            for r in await connection.fetch(_SQL["held"]):
                self.held.labels(r["kind"]).set(r["n"])
            self.throttled.clear()  # a type no longer throttled must not keep its last count
            for r in await connection.fetch(_SQL["throttled"]):
                self.throttled.labels(r["type"]).set(r["n"])
            if self.tally is None:
                self.cluster = await cluster_tally(connection)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times requests by their route template (not the raw path: ids
    in paths would make one time series per instance)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def tracking_send(event: Message) -> None:
            nonlocal status
            if event["type"] == "http.response.start":
                status = event["status"]
            await send(event)

        try:
            await self.app(scope, receive, tracking_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "<unmatched>"
            method = scope["method"]
            self.metrics.requests.labels(template, method, str(status)).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - started)
