"""The engine's use cases for the front door: deploy, start, send, read, complete.

The HTTP API and the CLI call these; they take a tenant id on every call and
never return another tenant's rows (every query filters by tenant). Events sent
from outside are written to the outbox in a transaction that first checks the
instance, so an accepted event is durable before the caller hears "accepted".
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import field
from datetime import datetime
from typing import Any

from statefleet.engine.handlers import MANUAL_TYPES
from statefleet.engine.record import record
from statefleet.engine.runtime.audit import append_event
from statefleet.engine.runtime.definitions import (
    Definition,
    deploy_definition,
    get_definition,
    list_definitions,
)
from statefleet.engine.runtime.instances import (
    START_EVENT,
    InstanceRuntime,
    StartRequest,
    StartResult,
    event_outbox_row,
)
from statefleet.engine.runtime.outbox import OutboxRow, insert_outbox, task_attempt_row
from statefleet.engine.runtime.priority import BATCH_PRIORITY, INTERACTIVE, check_priority
from statefleet.engine.runtime.schedules import Schedules
from statefleet.engine.runtime.tasks import completion_payload
from statefleet.engine.runtime.tenant_scheduling import (
    TenantScheduling,
    get_tenant_scheduling,
    set_tenant_scheduling,
)
from statefleet.engine.runtime.tenant_settings import (
    TenantLimits,
    get_tenant_limits,
    set_tenant_limits,
)
from statefleet.engine.runtime.upgrade_plans import Upgrades
from statefleet.engine.spec.limits import DEFAULT_SPEC_LIMITS, SpecLimits
from statefleet.engine.store.db import Connection, Pool, Record
from statefleet.engine.store.queries import load_queries

__all__ = [
    "BATCH_CHUNK",
    "BatchProgress",
    "BatchStarted",
    "IdempotencyKeyReused",
    "InstanceNotFound",
    "InstanceNotRunning",
    "InstancePage",
    "InstanceView",
    "InvalidCursor",
    "TaskNotCompletable",
    "TaskNotFound",
    "TaskPage",
    "UnknownBatch",
    "UnknownDefinitionKey",
    "UnknownDefinitionVersion",
    "WorkflowService",
]

SQL = {**load_queries("instances.sql"), **load_queries("tasks.sql"), **load_queries("api.sql")}

#: What ``list_instances`` accepts as an id prefix: no LIKE wildcard can hide in it.
_ID_PREFIX = re.compile(r"[0-9A-Fa-f-]{1,36}")

#: Instances inserted per transaction by ``start_batch``: big enough that a batch of
#: 10,000 is two round trips per table, small enough that one transaction stays short.
BATCH_CHUNK = 5_000


class InstanceNotFound(LookupError):
    pass


class InstanceNotRunning(RuntimeError):
    pass


class UnknownDefinitionKey(LookupError):
    pass


class UnknownDefinitionVersion(UnknownDefinitionKey):
    """The key exists but not in the version asked for."""


class TaskNotCompletable(RuntimeError):
    pass


class TaskNotFound(LookupError):
    pass


class UnknownBatch(LookupError):
    pass


class InvalidCursor(ValueError):
    """A pagination cursor this service did not hand out (or one that was altered)."""


class IdempotencyKeyReused(ValueError):
    """An idempotency key the tenant already used for a different request."""


@record
class InstanceView:
    id: uuid.UUID
    tenant_id: str
    definition_key: str
    definition_version: int
    status: str
    value: Any
    context: Any
    output: Any
    error: str | None
    created_at: datetime
    updated_at: datetime
    batch_id: uuid.UUID | None = None
    #: 0..10, higher first; 10 (interactive) unless it was started by a batch.
    priority: int = INTERACTIVE

    @classmethod
    def from_record(cls, r: Record) -> InstanceView:
        snapshot = r["snapshot"] or {}
        return cls(
            id=r["id"],
            tenant_id=r["tenant_id"],
            definition_key=r["definition_key"],
            definition_version=r["definition_version"],
            status=r["status"],
            value=snapshot.get("value"),
            context=snapshot.get("context"),
            output=r["output"],
            error=r["error"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
            batch_id=r.get("batch_id"),
            priority=r.get("priority", INTERACTIVE),
        )


@record
class InstancePage:
    items: list[InstanceView]
    next_cursor: str | None


@record
class TaskPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


@record
class BatchStarted:
    """What ``start_batch`` did: ``created`` is False when the idempotency key found it."""

    batch_id: uuid.UUID
    count: int
    created: bool = True


@record
class BatchProgress:
    batch_id: uuid.UUID
    total: int
    counts: dict[str, int] = field(default_factory=dict)
    priority: int = BATCH_PRIORITY


def _batch_item_key(batch_id: uuid.UUID, index: int) -> str:
    """The start idempotency key of a keyed batch's ``index``-th instance."""
    return f"batch:{batch_id}:{index}"


def _encode_cursor(created_at: datetime, instance_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{instance_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        when, _, ident = raw.partition("|")
        created_at = datetime.fromisoformat(when)
        if created_at.tzinfo is None:
            raise ValueError("naive timestamp")
        return created_at, uuid.UUID(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidCursor("cursor is not one this API returned") from exc


class WorkflowService:
    def __init__(
        self,
        pool: Pool,
        runtime: InstanceRuntime,
        *,
        spec_limits: SpecLimits = DEFAULT_SPEC_LIMITS,
    ) -> None:
        self.pool = pool
        self.runtime = runtime
        #: The default spec limits (``STATEFLEET_SPEC_MAX_*``); tenants may override them.
        self.spec_limits = spec_limits
        #: Moving running instances between definition versions (docs/upgrades.md).
        self.upgrades = Upgrades(pool, runtime, self.definition)
        #: Starting instances on a cron expression or a period (docs/schedules.md).
        self.schedules = Schedules(pool, self.definition)

    async def deploy(self, tenant_id: str, spec: Any, key: str | None = None) -> Definition:
        """Deploys under the tenant's spec limits (its overrides over the defaults)."""
        async with self.pool.acquire() as connection:
            limits = await get_tenant_limits(connection, tenant_id, self.spec_limits)
            return await deploy_definition(
                connection, tenant_id, spec, key, limits=limits.effective
            )

    async def tenant_limits(self, tenant_id: str) -> TenantLimits:
        """A tenant's spec limits (admin API). Raises ``UnknownTenant``."""
        async with self.pool.acquire() as connection:
            return await get_tenant_limits(connection, tenant_id, self.spec_limits, strict=True)

    async def set_tenant_limits(self, tenant_id: str, overrides: Mapping[str, int]) -> TenantLimits:
        """Replaces a tenant's limit overrides. Raises ``UnknownTenant``, ``ValueError``."""
        async with self.pool.acquire() as connection:
            return await set_tenant_limits(connection, tenant_id, self.spec_limits, overrides)

    async def tenant_scheduling(self, tenant_id: str) -> TenantScheduling:
        """A tenant's fair-share weight and task limits (admin API). Raises ``UnknownTenant``."""
        async with self.pool.acquire() as connection:
            return await get_tenant_scheduling(connection, tenant_id)

    async def set_tenant_scheduling(
        self, tenant_id: str, scheduling: TenantScheduling
    ) -> TenantScheduling:
        """Replaces a tenant's scheduling settings; the admitter applies them on its next
        pass, to work already waiting too. Raises ``UnknownTenant``."""
        async with self.pool.acquire() as connection:
            return await set_tenant_scheduling(connection, tenant_id, scheduling)

    async def definition(self, tenant_id: str, key: str, version: int | None = None) -> Definition:
        async with self.pool.acquire() as connection:
            found = await get_definition(connection, tenant_id, key, version)
            if found is None and version is not None:
                latest = await get_definition(connection, tenant_id, key, None)
                if latest is not None:
                    raise UnknownDefinitionVersion(f"no version {version} of definition '{key}'")
        if found is None:
            raise UnknownDefinitionKey(f"no definition '{key}' for this tenant")
        return found

    async def start(
        self,
        tenant_id: str,
        key: str,
        input: Mapping[str, Any] | None = None,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        start_event: str | None = START_EVENT,
        priority: int = INTERACTIVE,
    ) -> StartResult:
        (result,) = await self.start_many(
            tenant_id,
            key,
            [StartRequest(input, idempotency_key)],
            version=version,
            start_event=start_event,
            priority=priority,
        )
        return result

    async def start_many(
        self,
        tenant_id: str,
        key: str,
        requests: Sequence[StartRequest],
        *,
        version: int | None = None,
        start_event: str | None = START_EVENT,
        priority: int = INTERACTIVE,
    ) -> list[StartResult]:
        """Starts instances; ``priority`` 0..10 (below 10, held for the admitter).

        Raises:
            ValueError: ``priority`` out of range; nothing is written.
        """
        check_priority(priority)
        definition = await self.definition(tenant_id, key, version)
        return await self.runtime.start_many(
            tenant_id, definition.id, requests, start_event=start_event, priority=priority
        )

    async def send(
        self,
        tenant_id: str,
        instance_id: uuid.UUID,
        event_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        event_id: str | None = None,
    ) -> str:
        """Queues an event for a running instance; returns its id (idempotent with ``event_id``)."""
        event_id = event_id or f"evt-{uuid.uuid4()}"
        async with self.pool.acquire() as connection, connection.transaction():
            record = await connection.fetchrow(SQL["get_instance"], tenant_id, instance_id)
            if record is None:
                raise InstanceNotFound(f"instance {instance_id} not found")
            if record["status"] != "running":
                raise InstanceNotRunning(
                    f"instance {instance_id} is {record['status']}; it accepts no events"
                )
            row = event_outbox_row(tenant_id, instance_id, event_id, event_type, payload)
            written = await insert_outbox(connection, [row])
        await self.runtime.publish(written)
        return event_id

    async def get(self, tenant_id: str, instance_id: uuid.UUID) -> InstanceView:
        async with self.pool.acquire() as connection:
            record = await connection.fetchrow(SQL["get_instance"], tenant_id, instance_id)
        if record is None:
            raise InstanceNotFound(f"instance {instance_id} not found")
        return InstanceView.from_record(record)

    async def history(
        self, tenant_id: str, instance_id: uuid.UUID, *, after_seq: int = -1, limit: int = 1000
    ) -> list[dict[str, Any]]:
        async with self.pool.acquire() as connection:
            await self._check_instance(connection, tenant_id, instance_id)
            rows = await connection.fetch(
                SQL["list_events"], tenant_id, instance_id, after_seq, limit
            )
        return [dict(r) for r in rows]

    async def tasks(self, tenant_id: str, instance_id: uuid.UUID) -> list[dict[str, Any]]:
        async with self.pool.acquire() as connection:
            await self._check_instance(connection, tenant_id, instance_id)
            rows = await connection.fetch(SQL["list_instance_tasks"], tenant_id, instance_id)
        return [dict(r) for r in rows]

    async def complete_task(self, tenant_id: str, task_id: uuid.UUID, output: Any) -> None:
        """Finishes a pending manual (``HUMAN``) task; its completion event carries ``output``."""
        async with self.pool.acquire() as connection, connection.transaction():
            done = await connection.fetchrow(
                SQL["complete_manual_task"], tenant_id, task_id, output, sorted(MANUAL_TYPES)
            )
            if done is None:
                raise TaskNotCompletable(
                    f"task {task_id} is not a pending task of a running instance"
                )
            written = []
            if done["completion_event"]:
                row = event_outbox_row(
                    tenant_id,
                    done["instance_id"],
                    f"task-{task_id}-done",
                    done["completion_event"],
                    completion_payload(output),
                )
                written = await insert_outbox(connection, [row])
        await self.runtime.publish(written)

    # -- the HTTP API's further use cases ----------------------------------------------

    async def definitions(self, tenant_id: str) -> list[Definition]:
        """The latest version of every definition key of the tenant."""
        async with self.pool.acquire() as connection:
            return await list_definitions(connection, tenant_id)

    async def list_instances(
        self,
        tenant_id: str,
        *,
        definition_key: str | None = None,
        status: str | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
        id_prefix: str | None = None,
    ) -> InstancePage:
        """One page of the tenant's instances, newest first.

        The cursor is opaque to callers (a position, not a page number), so pages
        stay stable while instances are being created. ``id_prefix`` keeps the instances
        whose id starts with it (hex digits and dashes, any case).

        Raises:
            InvalidCursor: ``cursor`` was not returned by this method.
            ValueError: ``id_prefix`` holds something else than hex digits and dashes.
        """
        if id_prefix is not None:
            if not _ID_PREFIX.fullmatch(id_prefix):
                raise ValueError("an id prefix holds only hex digits and dashes")
            id_prefix = id_prefix.lower()
        after_at, after_id = _decode_cursor(cursor) if cursor else (None, None)
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                SQL["list_instances"],
                tenant_id,
                definition_key,
                status,
                created_after,
                created_before,
                after_at,
                after_id,
                limit + 1,
                id_prefix,
            )
        items = [InstanceView.from_record(r) for r in rows[:limit]]
        more = len(rows) > limit and bool(items)
        next_cursor = _encode_cursor(items[-1].created_at, items[-1].id) if more else None
        return InstancePage(items, next_cursor)

    async def cancel(self, tenant_id: str, instance_id: uuid.UUID) -> InstanceView:
        """Cancels a running instance, its open tasks and timers, with an audit row.

        One transaction: the status change (which bumps the version, so a step
        computed concurrently loses its check), the cancellations and the audit row.

        Raises:
            InstanceNotFound: no such instance for this tenant.
            InstanceNotRunning: the instance is already done, failed or cancelled.
        """
        async with self.pool.acquire() as connection, connection.transaction():
            stopped = await connection.fetchrow(SQL["cancel_instance"], tenant_id, instance_id)
            if stopped is None:
                record = await connection.fetchrow(SQL["get_instance"], tenant_id, instance_id)
                if record is None:
                    raise InstanceNotFound(f"instance {instance_id} not found")
                raise InstanceNotRunning(
                    f"instance {instance_id} is {record['status']}; it cannot be cancelled"
                )
            value = (stopped["snapshot"] or {}).get("value")
            await append_event(
                connection,
                tenant_id,
                instance_id,
                f"cancel-{uuid.uuid4()}",
                "statefleet.instance.cancelled",
                {},
                value,
                None,
            )
            await connection.execute(
                SQL["cancel_open_tasks_of_instances"], [tenant_id], [instance_id]
            )
            record = await connection.fetchrow(SQL["get_instance"], tenant_id, instance_id)
        assert record is not None, "the row was just updated in this transaction"
        return InstanceView.from_record(record)

    async def start_batch(
        self,
        tenant_id: str,
        key: str,
        inputs: Sequence[Mapping[str, Any] | None],
        *,
        version: int | None = None,
        start_event: str | None = START_EVENT,
        chunk_size: int = BATCH_CHUNK,
        idempotency_key: str | None = None,
        priority: int = BATCH_PRIORITY,
    ) -> BatchStarted:
        """Starts one instance per input, in bulk, and records them as one batch.

        Each chunk of ``chunk_size`` inputs is one transaction of one statement per
        table, so ten thousand inputs cost a handful of round trips. The batch row is
        written first (with the total asked for), so its progress can be read while
        later chunks are still being inserted.

        With ``idempotency_key``, a second call with the same key returns the batch the
        first one recorded (``created=False``). Its instances carry start idempotency
        keys made of the batch id and their position, so the second call also inserts
        whatever a first call that died half-way never did, and starts nothing twice.

        ``priority`` (0..10, default 5) orders the batch's work against the tenant's
        other work; below 10 its starts and tasks wait for the admitter, which shares
        the engine fairly between tenants (docs/scheduling.md). A repeat with the same
        idempotency key keeps the first call's priority.

        Raises:
            UnknownDefinitionKey: no such definition (or version); nothing is written.
            IdempotencyKeyReused: the key started a batch of another definition or size.
            ValueError: ``priority`` out of range; nothing is written.
        """
        check_priority(priority)
        definition = await self.definition(tenant_id, key, version)
        batch_id = uuid.uuid4()
        created = True
        async with self.pool.acquire() as connection:
            inserted = await connection.fetchval(
                SQL["insert_batch"],
                tenant_id,
                batch_id,
                definition.id,
                len(inputs),
                idempotency_key,
                priority,
            )
            if inserted is None:  # the key was used before
                found = await connection.fetchrow(
                    SQL["get_batch_by_key"], tenant_id, idempotency_key
                )
                assert found is not None, "batch rows are never deleted"
                if found["definition_key"] != definition.key or found["total"] != len(inputs):
                    raise IdempotencyKeyReused(
                        f"Idempotency-Key {idempotency_key!r} already started batch "
                        f"{found['id']} of {found['total']} '{found['definition_key']}' "
                        f"instances; use a new key for a different batch"
                    )
                batch_id, created = found["id"], False
                definition_id = found["definition_id"]
                priority = found["priority"]
                rows = await connection.fetch(SQL["batch_counts"], tenant_id, batch_id)
                if sum(r["n"] for r in rows) == found["total"]:  # nothing left to insert
                    return BatchStarted(batch_id, found["total"], created=False)
            else:
                definition_id = definition.id
        count = 0
        for start in range(0, len(inputs), chunk_size):
            chunk = [
                StartRequest(
                    item, _batch_item_key(batch_id, start + i) if idempotency_key else None
                )
                for i, item in enumerate(inputs[start : start + chunk_size])
            ]
            results = await self.runtime.start_many(
                tenant_id,
                definition_id,
                chunk,
                start_event=start_event,
                batch_id=batch_id,
                priority=priority,
            )
            count += len(results)
        return BatchStarted(batch_id, count, created)

    async def batch_progress(self, tenant_id: str, batch_id: uuid.UUID) -> BatchProgress:
        """How many instances of a batch are running, done, failed or cancelled.

        Raises:
            UnknownBatch: no such batch for this tenant.
        """
        async with self.pool.acquire() as connection:
            batch = await connection.fetchrow(SQL["get_batch"], tenant_id, batch_id)
            if batch is None:
                raise UnknownBatch(f"batch {batch_id} not found")
            rows = await connection.fetch(SQL["batch_counts"], tenant_id, batch_id)
        counts = dict.fromkeys(("running", "done", "failed", "cancelled"), 0)
        counts.update({r["status"]: r["n"] for r in rows})
        return BatchProgress(batch_id, batch["total"], counts, batch["priority"])

    async def get_task(self, tenant_id: str, task_id: uuid.UUID) -> dict[str, Any]:
        """A task (or timer) of the tenant.

        Raises:
            TaskNotFound: no such task for this tenant.
        """
        async with self.pool.acquire() as connection:
            record = await connection.fetchrow(SQL["get_task"], tenant_id, task_id)
        if record is None:
            raise TaskNotFound(f"task {task_id} not found")
        return dict(record)

    async def list_tasks(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        task_type: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> TaskPage:
        """One page of the tenant's tasks across its instances, oldest first.

        With ``status="pending"`` and ``task_type="HUMAN"`` this is the inbox: the work
        waiting for people, what has waited longest first. The cursor has the shape of
        :meth:`list_instances`' (a position, so pages stay stable while tasks arrive).

        Raises:
            InvalidCursor: ``cursor`` was not returned by this method.
        """
        after_at, after_id = _decode_cursor(cursor) if cursor else (None, None)
        async with self.pool.acquire() as connection:
            rows = await connection.fetch(
                SQL["list_tasks"], tenant_id, status, task_type, after_at, after_id, limit + 1
            )
        items = [dict(r) for r in rows[:limit]]
        more = len(rows) > limit and bool(items)
        last = items[-1] if items else None
        next_cursor = _encode_cursor(last["created_at"], last["id"]) if more and last else None
        return TaskPage(items, next_cursor)

    async def fail_task(self, tenant_id: str, task_id: uuid.UUID, error: str) -> None:
        """Fails a pending manual (``HUMAN``) task from outside.

        Its ``failureEvent`` is sent with ``{error, attempts, taskId, name}`` (the
        payload an automatic task's final failure carries); without one, the instance
        fails with the reason and an audit row, as it would for a handler task.

        Raises:
            TaskNotCompletable: not a pending manual task of a running instance.
        """
        written: list[OutboxRow] = []
        async with self.pool.acquire() as connection, connection.transaction():
            failed = await connection.fetchrow(
                SQL["fail_manual_task"], tenant_id, task_id, error, sorted(MANUAL_TYPES)
            )
            if failed is None:
                raise TaskNotCompletable(
                    f"task {task_id} is not a pending task of a running instance"
                )
            instance_id: uuid.UUID = failed["instance_id"]
            if failed["failure_event"]:
                payload = {
                    "error": error,
                    "attempts": failed["attempts"],
                    "taskId": str(task_id),
                    "name": failed["name"],
                }
                row = event_outbox_row(
                    tenant_id,
                    instance_id,
                    f"task-{task_id}-failed",
                    failed["failure_event"],
                    payload,
                )
                written = await insert_outbox(connection, [row])
            else:
                reason = f"task '{failed['name']}' ({failed['type']}) failed: {error}"
                stopped = await connection.fetchrow(
                    SQL["fail_instance"], tenant_id, instance_id, reason
                )
                if stopped is not None:
                    value = (stopped["snapshot"] or {}).get("value")
                    await append_event(
                        connection,
                        tenant_id,
                        instance_id,
                        f"task-{task_id}-failed",
                        "statefleet.task.failed",
                        {"taskId": str(task_id), "name": failed["name"], "error": error},
                        value,
                        reason,
                    )
                    await connection.execute(
                        SQL["cancel_open_tasks_of_instances"], [tenant_id], [instance_id]
                    )
        await self.runtime.publish(written)

    async def retry_task(self, tenant_id: str, task_id: uuid.UUID) -> None:
        """Gives a failed task one more attempt, and reopens the instance it failed.

        The task is pending and due again (its job is queued unless it is manual).
        If the instance's last audit row is this task's failure (it failed the
        instance, having no ``failureEvent``), the instance is running again from its
        checkpoint, with an audit row ``statefleet.task.retried`` saying why.

        Raises:
            TaskNotCompletable: the task is not failed.
        """
        written: list[OutboxRow] = []
        async with self.pool.acquire() as connection, connection.transaction():
            task = await connection.fetchrow(SQL["retry_failed_task"], tenant_id, task_id)
            if task is None:
                raise TaskNotCompletable(f"task {task_id} is not failed; only failed tasks retry")
            instance_id: uuid.UUID = task["instance_id"]
            last = await connection.fetchrow(SQL["last_event"], tenant_id, instance_id)
            if last is not None and last["event_id"] == f"task-{task_id}-failed":
                reopened = await connection.fetchrow(SQL["reopen_instance"], tenant_id, instance_id)
                if reopened is not None:
                    value = (reopened["snapshot"] or {}).get("value")
                    await append_event(
                        connection,
                        tenant_id,
                        instance_id,
                        f"task-{task_id}-retried-{last['seq'] + 1}",
                        "statefleet.task.retried",
                        {"taskId": str(task_id), "name": task["name"]},
                        value,
                        None,
                    )
            if task["kind"] == "task" and task["type"] not in MANUAL_TYPES and not task["held"]:
                job = task_attempt_row(
                    tenant_id,
                    task_id,
                    task["attempts"] + 1,
                    instance_id=instance_id,
                    run_at=task["run_at"],
                    db_now=task["db_now"],
                )
                written = [job]
        await self.runtime.publish(written)

    @staticmethod
    async def _check_instance(
        connection: Connection, tenant_id: str, instance_id: uuid.UUID
    ) -> None:
        if await connection.fetchrow(SQL["get_instance"], tenant_id, instance_id) is None:
            raise InstanceNotFound(f"instance {instance_id} not found")
