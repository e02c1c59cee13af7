"""A task attempt's success, committed by the step that applies its events.

A successful attempt used to commit in a transaction of its own (the task marked
succeeded, its completion written to the outbox), and then the step that applied the
completion ran a second one (and a third deleted the outbox row). Now the pool sends
the success with its events (:class:`TaskSuccess` on each ``EventJobData``, as rows
not stored), the engine delivers them straight to the instance's shard, and the
step's own transaction calls :func:`settle` before it applies them:

- the task is marked succeeded only if the attempt's lease is still its (the same
  check as before), and only then are its events applied;
- an attempt that lost its lease to another worker has its events dropped: that
  worker's result will count;
- a task cancelled while its handler ran (its state was left, an upgrade moved the
  instance) gets its completion recorded, not applied (:func:`record_late`).

That is one transaction per completed task instead of three. When no step can take
the success (the shard call failed, or the attempt has no event to carry it, or the
runner is not under the engine), :func:`commit` does what the separate transaction did:
the success and its events as stored outbox rows, which the engine or the sweeper then
delivers like any other.

Durability does not change: until a transaction marks the task succeeded, the
attempt's lease is the record, and if everything carrying the success is lost, the
lease expires and the task runs again (at least once per attempt, as before).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import uuid
from collections.abc import Sequence

from statefleet.engine.ports.queue import EventJobData, TaskSuccess
from statefleet.engine.runtime.audit import append_event
from statefleet.engine.runtime.outbox import OutboxRow, insert_outbox
from statefleet.engine.store.db import Connection, DeadlockDetected, Pool, Record
from statefleet.engine.store.queries import load_queries

__all__ = [
    "Completed",
    "commit",
    "completed_of",
    "late_events",
    "record_late",
    "settle",
    "stored",
]

log = logging.getLogger(__name__)
SQL = load_queries("tasks.sql")
#: Tries of one group of successes that Postgres aborts as a deadlock victim.
_DEADLOCK_RETRIES = 3

#: One attempt's success outside a step: its tenant, the success, its events (not stored).
Completed = tuple[str, TaskSuccess, Sequence[OutboxRow]]


async def settle(
    connection: Connection, successes: Sequence[tuple[str, TaskSuccess]]
) -> tuple[set[uuid.UUID], set[uuid.UUID]]:
    """Marks succeeded the tasks whose attempt still holds its lease, in the caller's
    transaction; returns their ids, and the ids of those cancelled meanwhile."""
    if not successes:
        return set(), set()
    done = {r["id"] for r in await _succeed(connection, successes)}
    if missing := [s for s in successes if s[1].task_id not in done]:
        # succeed_tasks finds rows by ctid: a row the lease heartbeat renewed while the
        # statement waited for it has a new one and was skipped, though still the
        # attempt's. Once more for those (a new statement sees the renewed row); a lease
        # really lost stays lost. Dropping them made their attempts run again.
        done.update(r["id"] for r in await _succeed(connection, missing))
    lost = [s for s in successes if s[1].task_id not in done]
    if not lost:
        return done, set()
    cancelled = {
        r["id"]
        for r in await connection.fetch(
            SQL["cancelled_tasks_of"], [t for t, _ in lost], [s.task_id for _, s in lost]
        )
    }
    for tenant_id, success in lost:
        if success.task_id not in cancelled:
            log.warning(
                "task %s: its attempt no longer holds the lease (another attempt took it, "
                "or the task finished); result dropped",
                success.task_id,
                extra={"tenant_id": tenant_id, "task_id": str(success.task_id)},
            )
    return done, cancelled


async def _succeed(
    connection: Connection, successes: Sequence[tuple[str, TaskSuccess]]
) -> list[Record]:
    return await connection.fetch(
        SQL["succeed_tasks"],
        [t for t, _ in successes],
        [s.task_id for _, s in successes],
        [s.lease_owner for _, s in successes],
        [s.output for _, s in successes],
    )


async def record_late(
    connection: Connection, events: Sequence[EventJobData]
) -> set[tuple[str, uuid.UUID]]:
    """Completions of tasks cancelled while their attempt ran: recorded, not applied.

    The result is discarded, but the completion is written to the instance's audit log
    as an unhandled event (the state unchanged, no effects), so the history shows what
    arrived and that it was ignored. Attempts that lost their lease otherwise (another
    worker took over) record nothing: that worker's result will count. Returns the
    instances written to: their version moved on (``lock_running_instance``), so a
    copy of their checkpoint held in memory is stale.
    """
    touched: set[tuple[str, uuid.UUID]] = set()
    for event in events:
        instance_id = uuid.UUID(event.instance_id)
        row = await connection.fetchrow(SQL["lock_running_instance"], event.tenant_id, instance_id)
        if row is None:
            continue  # the instance stopped: nothing will read its events any more
        touched.add((event.tenant_id, instance_id))
        await append_event(
            connection,
            event.tenant_id,
            instance_id,
            event.event_id,
            event.event_type,
            event.payload,
            (row["snapshot"] or {}).get("value"),
        )
    return touched


def late_events(
    successes: Sequence[tuple[TaskSuccess, Sequence[EventJobData]]], cancelled: set[uuid.UUID]
) -> list[EventJobData]:
    """The completion event of each success whose task was cancelled (emitted events
    of such an attempt are dropped)."""
    return [
        event
        for success, events in successes
        if success.task_id in cancelled
        for event in events
        if event.event_id == success.done_event_id
    ]


def stored(row: OutboxRow) -> OutboxRow:
    """A success's event row once the success is committed: stored in the outbox, and
    no longer carrying the success (a step applying it must not settle it again)."""
    event = row.event
    return dataclasses.replace(
        row,
        stored=True,
        event=None if event is None else dataclasses.replace(event, success=None),
    )


def completed_of(rows: Sequence[OutboxRow]) -> list[Completed]:
    """The successes ``rows`` carry, each with its rows (rows carrying none are left out)."""
    by_task: dict[uuid.UUID, tuple[str, TaskSuccess, list[OutboxRow]]] = {}
    for row in rows:
        success = None if row.event is None else row.event.success
        if success is not None:
            by_task.setdefault(success.task_id, (row.tenant_id, success, []))[2].append(row)
    return list(by_task.values())


async def commit(pool: Pool, completed: Sequence[Completed]) -> list[list[OutboxRow] | None]:
    """Commits successes without a step, in one transaction: per success, its events as
    stored outbox rows (those written: a dedupe key seen before is skipped), or None if
    its lease was lost.

    Tried again when Postgres aborts it as a deadlock victim (it rolled back whole, so
    nothing is applied twice): the handlers have already run, and a success lost here
    would run each of them again once its lease expires.
    """
    for attempt in range(1, _DEADLOCK_RETRIES):
        try:
            return await _commit_once(pool, completed)
        except DeadlockDetected:
            log.warning("committing %d success(es) deadlocked; again", len(completed))
            await asyncio.sleep(random.uniform(0.001, 0.01 * attempt))
    return await _commit_once(pool, completed)


async def _commit_once(pool: Pool, completed: Sequence[Completed]) -> list[list[OutboxRow] | None]:
    async with pool.acquire() as connection, connection.transaction():
        done, cancelled = await settle(connection, [(t, s) for t, s, _ in completed])
        late = late_events(
            [(s, [r.event for r in rows if r.event is not None]) for _, s, rows in completed],
            cancelled,
        )
        if late:
            await record_late(connection, late)
        planned = [
            [stored(r) for r in rows] if s.task_id in done else None for _, s, rows in completed
        ]
        written = await insert_outbox(connection, [r for rows in planned if rows for r in rows])
    kept = {row.id for row in written}
    return [None if rows is None else [r for r in rows if r.id in kept] for rows in planned]
