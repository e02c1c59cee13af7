"""The task runner: claim one attempt, run its handler, finish it exactly once.

A claim is a lease: the attempt is this worker's until ``lease_expires_at``.
If the worker dies, the lease expires and the task is claimed again (the
sweeper re-enqueues it), so a task runs at least once per attempt and its
outcome is recorded once: every finishing statement checks that the lease is
still ours, and the completion event is written in the same transaction.

Timers are tasks too: claiming a due timer delivers its event.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from statefleet.engine.handlers import (
    MANUAL_TYPES,
    Emit,
    HandlerRegistry,
    HandlerResult,
    PermanentTaskError,
    TaskContext,
    UnknownTaskType,
)
from statefleet.engine.runtime.instances import event_outbox_row
from statefleet.engine.runtime.observe import Observer
from statefleet.engine.runtime.outbox import OutboxRow, OutboxSink, insert_outbox, task_attempt_row
from statefleet.engine.store.db import Connection, json_text
from statefleet.engine.store.queries import load_queries

__all__ = ["TaskRunner", "TaskRunnerSettings", "backoff_ms", "completion_payload"]

log = logging.getLogger(__name__)

SQL = {**load_queries("tasks.sql"), **load_queries("instances.sql")}
MANUAL = sorted(MANUAL_TYPES)


@dataclass(frozen=True, slots=True)
class TaskRunnerSettings:
    #: Lease of an attempt without its own ``timeout``; a dead worker's task waits this long.
    default_lease_ms: int = 300_000
    #: Extra lease beyond a task's ``timeout``, for committing its result.
    lease_margin_ms: int = 5_000
    #: Upper bound of one retry delay, whatever the backoff says.
    max_backoff_ms: int = 3_600_000


def backoff_ms(
    backoff: dict[str, Any] | None,
    attempt: int,
    *,
    cap_ms: int,
    jitter: Callable[[], float] = random.random,
) -> int:
    """Delay before the attempt after ``attempt`` (1-based).

    Exponential backoff doubles the base delay per attempt; "equal jitter"
    keeps half of it and randomises the other half, so retries of many tasks
    failing together spread out instead of arriving in waves.
    """
    spec = backoff or {"type": "exponential", "delay": 1000}
    base = int(spec.get("delay", 1000))
    delay = base if spec.get("type") == "fixed" else base * 2 ** max(attempt - 1, 0)
    delay = min(delay, cap_ms)
    return int(delay / 2 + delay / 2 * jitter())


def completion_payload(output: Any) -> dict[str, Any]:
    """An event payload is an object; a handler's non-object output is wrapped as ``output``."""
    return output if isinstance(output, dict) else {"output": output}


class TaskRunner:
    def __init__(
        self,
        pool: asyncpg.Pool[Any],
        registry: HandlerRegistry,
        publisher: OutboxSink,
        *,
        worker_id: str | None = None,
        settings: TaskRunnerSettings | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.observer = observer
        self.pool = pool
        self.registry = registry
        self.publisher = publisher
        self.worker_id = worker_id or f"worker-{uuid.uuid4()}"
        self.settings = settings or TaskRunnerSettings()

    async def run(self, tenant_id: str, task_id: str) -> str:
        """Runs one attempt of the task if it can be claimed; returns what happened.

        Never raises for a handler's failure (that is recorded on the task);
        raises only on infrastructure errors, so the job is redelivered.
        """
        started = time.perf_counter()
        seen_type: list[str] = []  # filled once the task is claimed (runs share this object)
        outcome = await self._run(tenant_id, task_id, seen_type)
        if self.observer is not None:
            task_type = seen_type[0] if seen_type else "-"
            self.observer.task_finished(task_type, outcome, time.perf_counter() - started)
        return outcome

    async def _run(self, tenant_id: str, task_id: str, seen_type: list[str]) -> str:
        try:
            task_uuid = uuid.UUID(task_id)
        except ValueError:
            return "unknown"
        async with self.pool.acquire() as connection:
            task = await connection.fetchrow(
                SQL["claim_task"],
                tenant_id,
                task_uuid,
                self.worker_id,
                self.settings.default_lease_ms,
                MANUAL,
                self.settings.lease_margin_ms,
            )
            if task is None:
                return await self._not_claimed(connection, tenant_id, task_uuid)
        seen_type.append(task["type"] if task["kind"] == "task" else "timer")
        if task["kind"] == "timer":
            await self._finish(task, output=None, deliver=task["type"], payload={})
            return "timer_fired"
        context = TaskContext(
            tenant_id=tenant_id,
            instance_id=str(task["instance_id"]),
            task_id=task_id,
            task_type=task["type"],
            name=task["name"],
            input=task["input"],
            attempt=task["attempts"],
            max_attempts=task["max_attempts"],
            idempotency_key=task["idempotency_key"] or task_id,
            policy=task["policy"],
            timeout_ms=task["timeout_ms"],
        )
        try:
            handler = self.registry.get(task["type"])
            timeout = task["timeout_ms"] / 1000 if task["timeout_ms"] else None
            async with asyncio.timeout(timeout):
                output = await handler(context)
        except (PermanentTaskError, UnknownTaskType) as exc:
            await self._failed(task, f"{type(exc).__name__}: {exc}", final=True)
            return "failed"
        except TimeoutError:
            message = f"timed out after {task['timeout_ms']} ms"
            final = task["attempts"] >= task["max_attempts"]
            await self._failed(task, message, final=final)
            return "failed" if final else "retrying"
        except Exception as exc:
            final = task["attempts"] >= task["max_attempts"]
            await self._failed(task, f"{type(exc).__name__}: {exc}", final=final)
            return "failed" if final else "retrying"
        emit: tuple[Emit, ...] = ()
        if isinstance(output, HandlerResult):
            output, emit = output.output, output.emit
        event = task["completion_event"]
        await self._finish(
            task, output=output, deliver=event, payload=completion_payload(output), emit=emit
        )
        return "succeeded"

    async def _not_claimed(self, connection: Connection, tenant_id: str, task_id: uuid.UUID) -> str:
        """A job for a task that is not claimable: early (re-enqueue) or already settled."""
        early = await connection.fetchrow(SQL["pending_not_due"], tenant_id, task_id)
        if early is None:
            return "not_claimable"
        row = task_attempt_row(
            tenant_id,
            task_id,
            early["attempts"] + 1,
            run_at=early["run_at"],
            db_now=early["db_now"],
        )
        # Not an outbox row: publishing it enqueues it, and marking it is a no-op.
        await self.publisher.publish([row])
        return "not_due"

    async def _finish(
        self,
        task: asyncpg.Record,
        *,
        output: Any,
        deliver: str | None,
        payload: dict[str, Any],
        emit: tuple[Emit, ...] = (),
    ) -> None:
        tenant_id, task_id = task["tenant_id"], task["id"]
        outbox: list[OutboxRow] = []
        async with self.pool.acquire() as connection, connection.transaction():
            done = await connection.fetchrow(
                SQL["succeed_task"], tenant_id, task_id, self.worker_id, output
            )
            if done is None:
                log.warning("task %s lost its lease before finishing; result dropped", task_id)
                return
            rows = [
                event_outbox_row(
                    tenant_id,
                    done["instance_id"],
                    f"task-{task_id}-emit-{index}",
                    emitted.type,
                    dict(emitted.payload),
                )
                for index, emitted in enumerate(emit)
            ]
            if deliver:
                prefix = "timer" if task["kind"] == "timer" else "task"
                rows.append(
                    event_outbox_row(
                        tenant_id, done["instance_id"], f"{prefix}-{task_id}-done", deliver, payload
                    )
                )
            outbox = await insert_outbox(connection, rows)
        await self.publisher.publish(outbox)

    async def _failed(self, task: asyncpg.Record, message: str, *, final: bool) -> None:
        tenant_id, task_id = task["tenant_id"], task["id"]
        outbox: list[OutboxRow] = []
        async with self.pool.acquire() as connection, connection.transaction():
            if not final:
                delay = backoff_ms(
                    task["backoff"], task["attempts"], cap_ms=self.settings.max_backoff_ms
                )
                retry = await connection.fetchrow(
                    SQL["retry_task"], tenant_id, task_id, self.worker_id, message, delay
                )
                if retry is None:
                    return
                row = task_attempt_row(
                    tenant_id,
                    task_id,
                    retry["attempts"] + 1,
                    instance_id=task["instance_id"],
                    run_at=retry["run_at"],
                    db_now=retry["db_now"],
                )
                outbox = await insert_outbox(connection, [row])
            else:
                failed = await connection.fetchrow(
                    SQL["fail_task"], tenant_id, task_id, self.worker_id, message
                )
                if failed is None:
                    return
                if failed["failure_event"]:
                    payload = {
                        "error": message,
                        "attempts": failed["attempts"],
                        "taskId": str(task_id),
                        "name": task["name"],
                    }
                    row = event_outbox_row(
                        tenant_id,
                        failed["instance_id"],
                        f"task-{task_id}-failed",
                        failed["failure_event"],
                        payload,
                    )
                    outbox = await insert_outbox(connection, [row])
                else:
                    await self._fail_instance(connection, task, message)
        await self.publisher.publish(outbox)

    async def _fail_instance(
        self, connection: Connection, task: asyncpg.Record, message: str
    ) -> None:
        """No failureEvent: the instance fails with the reason, and the audit log says why."""
        error = f"task '{task['name']}' ({task['type']}) failed: {message}"
        stopped = await connection.fetchrow(
            SQL["fail_instance"], task["tenant_id"], task["instance_id"], error
        )
        if stopped is None:
            return
        value = stopped["snapshot"].get("value")
        last_seq = await connection.fetchval(
            SQL["last_event_seq"], task["tenant_id"], task["instance_id"]
        )
        seq = (last_seq if last_seq is not None else -1) + 1
        await connection.execute(
            SQL["insert_events"],
            [task["tenant_id"]],
            [task["instance_id"]],
            [seq],
            [f"task-{task['id']}-failed"],
            ["statefleet.task.failed"],
            [json_text({"taskId": str(task["id"]), "name": task["name"], "error": message})],
            [json_text(value)],
            [json_text(value)],
            ["[]"],
            [False],
            [error],
        )
        await connection.execute(
            SQL["cancel_open_tasks_of_instances"], [task["tenant_id"]], [task["instance_id"]]
        )
