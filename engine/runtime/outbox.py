"""The outbox: jobs written in a step's transaction, published to the queue after commit.

Writing the job with the step and publishing it afterwards means a crash can
delay a job (the sweeper publishes rows still unpublished) but never lose one
or publish one for a step that rolled back. Publishing twice is harmless: jobs
carry dedupe keys and the engine applies events and claims tasks idempotently.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson

from statefleet.engine import tracing
from statefleet.engine.ports.queue import (
    TASK_JOB,
    TASK_RUNNER_QUEUE,
    EventJobData,
    Queue,
    QueueJob,
    task_dedupe_key,
)
from statefleet.engine.record import record
from statefleet.engine.runtime.groupcommit import GroupCommit
from statefleet.engine.store.db import Connection, Pool, json_text, new_uuid
from statefleet.engine.store.queries import load_queries

__all__ = [
    "CollectingPublisher",
    "OutboxRow",
    "OutboxSink",
    "Publisher",
    "continue_traces",
    "insert_dead_letter",
    "insert_outbox",
]

SQL = load_queries("outbox.sql")


@record
class OutboxRow:
    tenant_id: str
    id: uuid.UUID
    instance_id: uuid.UUID | None
    queue: str
    job_name: str
    data: dict[str, Any]
    dedupe_key: str
    available_at: datetime | None = None
    db_now: datetime | None = None
    #: Waits in the outbox for the admitter (work below the interactive priority)
    #: instead of being published after commit: see ``admission.py``.
    held: bool = False
    priority: int = 10
    #: Whether the row is in the ``outbox`` table. Jobs whose durable record is another
    #: row are not: a task attempt's (its ``tasks`` row, see :func:`task_attempt_row`);
    #: the sweeper re-sends those from their rows, and there is nothing to mark published.
    stored: bool = True
    #: Not stored: an engine-made event as the engine built it (``event_outbox_row``),
    #: so delivering the row straight to its shard (``Engine.route``) does not parse
    #: ``data`` back, which cost a few microseconds per task completion. A task's
    #: success travels on it uncommitted (``EventJobData.success``, ``completions.py``).
    event: EventJobData | None = None
    #: Not stored: a task job whose task its step inserted claimed (``TaskClaim``): the
    #: row as the pool runs it, ``lease_owner`` naming that pool. The engine hands such
    #: a job to the pool itself; the broker never carries it.
    claim: dict[str, Any] | None = None

    def job(self) -> QueueJob:
        """The queue job; a future ``available_at`` becomes a delay on this host's clock."""
        run_at = None
        if self.available_at is not None and self.db_now is not None:
            delay = self.available_at - self.db_now
            if delay > timedelta(0):
                run_at = datetime.now(UTC) + delay
        return QueueJob(self.queue, self.job_name, self.data, self.dedupe_key, run_at)


def task_attempt_row(
    tenant_id: str,
    task_id: uuid.UUID | str,
    attempt: int,
    *,
    instance_id: uuid.UUID | None = None,
    run_at: datetime | None = None,
    db_now: datetime | None = None,
    task_type: str | None = None,
    claim: dict[str, Any] | None = None,
) -> OutboxRow:
    """The job that runs ``attempt`` (1-based) of a task, due at ``run_at`` (DB clock).

    ``task_type`` (a task's, never a timer's) travels as the job's advisory ``taskType``,
    so the pool need not read the row to find the type's slot.

    Never written to the outbox: the pending ``tasks`` row is the durable record, and
    the sweeper re-sends due pending tasks whose job was lost (``due_tasks``), so an
    outbox row would only add an insert and a "published" mark per attempt.

    ``claim``: the task was inserted claimed for a pool (``OutboxRow.claim``); if its
    job never reaches that pool, its lease expires and the sweeper re-sends it, as it
    does a dead pool's attempts.
    """
    return OutboxRow(
        tenant_id=tenant_id,
        id=new_uuid(),
        instance_id=instance_id,
        queue=TASK_RUNNER_QUEUE,
        job_name=TASK_JOB,
        data={"tenantId": tenant_id, "taskId": str(task_id)}
        | ({} if task_type is None else {"taskType": task_type}),
        dedupe_key=task_dedupe_key(str(task_id), attempt),
        available_at=run_at,
        db_now=db_now,
        stored=False,
        claim=claim,
    )


async def insert_outbox(connection: Connection, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
    """Inserts rows; returns those actually written (a dedupe key seen before is skipped)."""
    if not rows:
        return []
    written = await connection.fetch(
        SQL["insert_outbox"],
        [
            (
                r.tenant_id,
                r.id,
                r.instance_id,
                r.queue,
                r.job_name,
                json_text(r.data),
                r.dedupe_key,
                r.available_at,
                r.held,
                r.priority,
            )
            for r in rows
        ],
    )
    ids = {record["id"] for record in written}
    return [r for r in rows if r.id in ids]


async def insert_dead_letter(
    connection: Connection, tenant_id: str | None, job: QueueJob, reason: str
) -> None:
    """Keeps a job that can never succeed (malformed) where people can read it."""
    body = orjson.dumps({"name": job.name, "data": job.data})
    await connection.execute(SQL["insert_dead_letter"], tenant_id, job.queue, body, reason)


class OutboxSink(Protocol):
    """Takes committed outbox rows: a :class:`Publisher`, or a :class:`CollectingPublisher`.

    Obligation: never called before the rows' transaction committed. A row that
    is not in the outbox table (a job sent again without being recorded) may be
    passed too; marking it published is then a no-op.
    """

    async def publish(self, rows: Sequence[OutboxRow]) -> None: ...


class CollectingPublisher:
    """Keeps rows instead of publishing them, for a caller that hands them on.

    A Ray actor runs in its own process and cannot reach a process-local queue:
    it returns what it collected here to the engine loop, which owns the queue
    client and sends the rows on (``Engine.route``).
    """

    def __init__(self) -> None:
        self.rows: list[OutboxRow] = []

    async def publish(self, rows: Sequence[OutboxRow]) -> None:
        self.rows.extend(rows)

    def take(self) -> list[OutboxRow]:
        """The rows collected so far, forgetting them."""
        rows, self.rows = self.rows, []
        return rows


class Publisher:
    """Sends committed outbox rows to the queue and marks them published.

    The marks of concurrent publishes are group-committed: one UPDATE for all of
    them (a mark only spares the sweeper a harmless re-send, so it may wait for
    company).
    """

    def __init__(self, pool: Pool, queue: Queue) -> None:
        self.pool = pool
        self.queue = queue
        self._marks: GroupCommit[Sequence[OutboxRow], None] = GroupCommit(
            functools.partial(self._write, "mark_published"), max_batch=64
        )
        self._deletes: GroupCommit[Sequence[OutboxRow], None] = GroupCommit(
            functools.partial(self._write, "delete_delivered"), max_batch=64
        )

    async def publish(self, rows: Sequence[OutboxRow]) -> None:
        """Best effort: on failure the rows stay unpublished and the sweeper retries them."""
        if not rows:
            return
        await self.queue.enqueue_many([row.job() for row in rows])
        await self.mark_published(rows)

    async def mark_published(self, rows: Sequence[OutboxRow]) -> None:
        """Records stored rows as sent to the queue."""
        await self._settle(self._marks, rows)

    async def forget_delivered(self, rows: Sequence[OutboxRow]) -> None:
        """Deletes stored rows whose event the engine applied itself (its direct path).

        A published row stays (``redeliver_lost_events`` reads it: a broker can lose
        what it accepted); a delivered one has nothing left to do, its event is in the
        audit log.
        """
        await self._settle(self._deletes, rows)

    @staticmethod
    async def _settle(
        commits: GroupCommit[Sequence[OutboxRow], None], rows: Sequence[OutboxRow]
    ) -> None:
        stored = [row for row in rows if row.stored]
        if stored:
            await commits.submit(stored)

    async def _write(self, query: str, batches: Sequence[Sequence[OutboxRow]]) -> list[None]:
        """One statement for every row of the group-committed ``batches``."""
        rows = [row for batch in batches for row in batch]
        async with self.pool.acquire() as connection:
            await connection.execute(SQL[query], [r.tenant_id for r in rows], [r.id for r in rows])
        return [None] * len(batches)

    async def redeliver_lost_events(
        self, grace_ms: int, horizon_ms: int = 86_400_000, limit: int = 500
    ) -> int:
        """Re-sends event jobs published over ``grace_ms`` ago but never applied.

        Returns how many. Each re-send restarts the row's grace period, so a job that
        is only queued behind a long backlog is re-sent at most once per grace.
        """
        async with self.pool.acquire() as connection:
            records = await connection.fetch(
                SQL["published_unapplied_events"], grace_ms, horizon_ms, limit
            )
            if not records:
                return 0
            jobs = [
                QueueJob(r["queue"], r["job_name"], r["data"], r["dedupe_key"]) for r in records
            ]
            await self.queue.enqueue_many(jobs)
            await connection.execute(
                SQL["touch_published"],
                sorted({r["tenant_id"] for r in records}),
                [r["id"] for r in records],
            )
            return len(records)

    async def republish_stale(self, grace_ms: int, limit: int = 500) -> int:
        """Publishes rows left unpublished for longer than ``grace_ms``; returns how many.

        No transaction and no row lock while the broker is called: a lock held across
        a slow enqueue made every publisher's mark (and the requests awaiting it) wait.
        """
        async with self.pool.acquire() as connection:
            records = await connection.fetch(SQL["unpublished"], grace_ms, limit)
            if not records:
                return 0
            rows = [
                OutboxRow(
                    tenant_id=r["tenant_id"],
                    id=r["id"],
                    instance_id=None,
                    queue=r["queue"],
                    job_name=r["job_name"],
                    data=r["data"],
                    dedupe_key=r["dedupe_key"],
                    available_at=r["available_at"],
                    db_now=r["db_now"],
                )
                for r in records
            ]
            await self.queue.enqueue_many([row.job() for row in rows])
            await connection.execute(
                SQL["mark_published"], [r.tenant_id for r in rows], [r.id for r in rows]
            )
            return len(rows)


def continue_traces(spans: Mapping[str, tracing.Span], rows: Sequence[OutboxRow]) -> None:
    """The task jobs a traced step created carry its context (``spans``: the step's span
    by instance id) to the pool, whose attempt span continues it."""
    for row in rows:
        span = spans.get(str(row.instance_id))
        if span is not None and row.queue == TASK_RUNNER_QUEUE and "traceContext" not in row.data:
            headers = tracing.carrier_of(span)
            if headers:
                row.data["traceContext"] = headers
