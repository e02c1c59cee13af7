"""Prometheus metrics of one app: its own registry, no process-global collectors.

Request counts and latencies are observed by a middleware. Events applied, task
outcomes and step latencies come from the runtime's observer port when this
process runs workers (the embedded worker, ``statefleet up``). Engine-wide numbers
(instances and tasks by status, outbox lag) are read from Postgres when scraped.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from statefleet.engine.runtime.instances import ApplyOutcome
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
FROM outbox WHERE published_at IS NULL AND available_at <= now();
""",
    source="statefleet.api.metrics",
)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
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
        self.events = Counter(
            "statefleet_events",
            "Events handled by this process's workers, by outcome (applied, duplicate, ...)",
            ["outcome"],
            registry=self.registry,
        )
        self.step_latency = Histogram(
            "statefleet_step_batch_seconds",
            "Time to apply and commit one batch of events (group commit)",
            registry=self.registry,
        )
        self.task_outcomes = Counter(
            "statefleet_task_runs",
            "Task jobs handled by this process's workers, by task type and outcome",
            ["type", "outcome"],
            registry=self.registry,
        )
        self.task_latency = Histogram(
            "statefleet_task_run_seconds",
            "Time to claim, run and finish one task attempt, by task type",
            ["type"],
            registry=self.registry,
        )
        self.queue_lag = Gauge(
            "statefleet_outbox_lag_seconds",
            "Age of the oldest due, unpublished outbox job (0 when none)",
            registry=self.registry,
        )

    # The runtime's observer port (statefleet.engine.runtime.observe.Observer).

    def events_applied(self, outcomes: Sequence[ApplyOutcome], seconds: float) -> None:
        for outcome in outcomes:
            self.events.labels(outcome.outcome).inc()
        self.step_latency.observe(seconds)

    def task_finished(self, task_type: str, outcome: str, seconds: float) -> None:
        self.task_outcomes.labels(task_type, outcome).inc()
        self.task_latency.labels(task_type).observe(seconds)

    async def render(self, pool: asyncpg.Pool[Any]) -> bytes:
        """The exposition text, after refreshing the gauges read from Postgres."""
        async with pool.acquire() as connection:
            for gauge, query in (
                (self.instances, "instances_by_status"),
                (self.tasks, "tasks_by_status"),
            ):
                gauge.clear()
                for row in await connection.fetch(_SQL[query]):
                    gauge.labels(row["status"]).set(row["n"])
            self.queue_lag.set(await connection.fetchval(_SQL["outbox_lag"]))
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
