"""The engine's use cases for the front door: deploy, start, send, read, complete.

The HTTP API and the CLI call these; they take a tenant id on every call and
never return another tenant's rows (every query filters by tenant). Events sent
from outside are written to the outbox in a transaction that first checks the
instance, so an accepted event is durable before the caller hears "accepted".
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from statefleet.engine.handlers import MANUAL_TYPES
from statefleet.engine.runtime.definitions import Definition, deploy_definition, get_definition
from statefleet.engine.runtime.instances import (
    START_EVENT,
    InstanceRuntime,
    StartRequest,
    StartResult,
    event_outbox_row,
)
from statefleet.engine.runtime.outbox import insert_outbox
from statefleet.engine.runtime.tasks import completion_payload
from statefleet.engine.store.db import Connection
from statefleet.engine.store.queries import load_queries

__all__ = [
    "InstanceNotFound",
    "InstanceNotRunning",
    "InstanceView",
    "TaskNotCompletable",
    "UnknownDefinitionKey",
    "WorkflowService",
]

SQL = {**load_queries("instances.sql"), **load_queries("tasks.sql")}


class InstanceNotFound(LookupError):
    pass


class InstanceNotRunning(RuntimeError):
    pass


class UnknownDefinitionKey(LookupError):
    pass


class TaskNotCompletable(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
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

    @classmethod
    def from_record(cls, r: asyncpg.Record) -> InstanceView:
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
        )


class WorkflowService:
    def __init__(self, pool: asyncpg.Pool[Any], runtime: InstanceRuntime) -> None:
        self.pool = pool
        self.runtime = runtime

    async def deploy(self, tenant_id: str, spec: Any, key: str | None = None) -> Definition:
        async with self.pool.acquire() as connection:
            return await deploy_definition(connection, tenant_id, spec, key)

    async def definition(self, tenant_id: str, key: str, version: int | None = None) -> Definition:
        async with self.pool.acquire() as connection:
            found = await get_definition(connection, tenant_id, key, version)
        if found is None:
            what = f"version {version} of '{key}'" if version else f"definition '{key}'"
            raise UnknownDefinitionKey(f"unknown {what}")
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
    ) -> StartResult:
        (result,) = await self.start_many(
            tenant_id,
            key,
            [StartRequest(input, idempotency_key)],
            version=version,
            start_event=start_event,
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
    ) -> list[StartResult]:
        definition = await self.definition(tenant_id, key, version)
        return await self.runtime.start_many(
            tenant_id, definition.id, requests, start_event=start_event
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

    @staticmethod
    async def _check_instance(
        connection: Connection, tenant_id: str, instance_id: uuid.UUID
    ) -> None:
        if await connection.fetchrow(SQL["get_instance"], tenant_id, instance_id) is None:
            raise InstanceNotFound(f"instance {instance_id} not found")
