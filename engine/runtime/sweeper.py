"""The safety net: republish what a lost message or a dead process left behind.

Queues are at least once, but a process can die between a commit and the
publish that follows it, a broker can lose a job it accepted (the memory driver
forgets everything on restart; Redis can restart without its data), and a worker
can die holding a lease. The
sweeper finds such work in Postgres and enqueues it again; every job it sends
is idempotent, so sending one that was not lost after all is harmless.
"""

from __future__ import annotations

import logging

from statefleet.engine.handlers import MANUAL_TYPES
from statefleet.engine.ports.queue import task_job
from statefleet.engine.record import record
from statefleet.engine.runtime.background import BackgroundLoop
from statefleet.engine.runtime.outbox import Publisher
from statefleet.engine.store.db import Pool
from statefleet.engine.store.queries import load_queries

__all__ = ["SweepReport", "Sweeper"]

log = logging.getLogger(__name__)
SQL = load_queries("tasks.sql")


@record
class SweepReport:
    outbox: int
    tasks: int
    events: int = 0


class Sweeper(BackgroundLoop):
    task_name = "statefleet-sweeper"
    failure_log = log
    failure_message = "sweep failed; trying again in %d ms"

    def __init__(
        self,
        pool: Pool,
        publisher: Publisher,
        *,
        interval_ms: int = 5_000,
        grace_ms: int = 10_000,
        event_grace_ms: int = 60_000,
        batch: int = 500,
    ) -> None:
        self.pool = pool
        self.publisher = publisher
        self.interval_ms = interval_ms
        self.grace_ms = grace_ms
        # Longer than grace_ms: an event job published and still queued behind a backlog
        # is not lost, and re-sending it early would only add load.
        self.event_grace_ms = event_grace_ms
        self.batch = batch
        #: ``last_pass``: monotonic time the last pass ended (failed or not): the engine's
        #: liveness signal.
        super().__init__()

    async def sweep_once(self) -> SweepReport:
        """One pass: stale outbox rows, lost event jobs, due tasks/timers, expired leases."""
        outbox = await self.publisher.republish_stale(self.grace_ms, self.batch)
        events = await self.publisher.redeliver_lost_events(self.event_grace_ms, limit=self.batch)
        async with self.pool.acquire() as connection, connection.transaction():
            due = await connection.fetch(
                SQL["due_tasks"], sorted(MANUAL_TYPES), self.grace_ms, self.batch
            )
            jobs = [
                task_job(tenant_id=r["tenant_id"], task_id=str(r["id"]), attempt=r["attempts"] + 1)
                for r in due
            ]
            if jobs:
                await self.publisher.queue.enqueue_many(jobs)
        if outbox or events or jobs:
            log.info(
                "sweeper re-sent %d unpublished job(s), %d lost event(s), %d task job(s)",
                outbox,
                events,
                len(jobs),
            )
        return SweepReport(outbox=outbox, tasks=len(jobs), events=events)

    def _wait_ms(self) -> int:
        return self.interval_ms

    async def _pass(self, wait: float) -> float:
        await self.sweep_once()
        return wait
