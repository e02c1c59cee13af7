"""The task runner: claim one attempt, run its handler, finish it exactly once.

A claim is a lease: the attempt is this worker's until ``lease_expires_at``.
If the worker dies, the lease expires and the task is claimed again (the
sweeper re-enqueues it), so a task runs at least once per attempt and its
outcome is recorded once: every finishing statement checks that the lease is
still the attempt's, and the completion event is applied (a success, by the step:
``completions.py``) or written to the outbox in the same transaction.

Claims of concurrent attempts are group-committed
(:mod:`statefleet.engine.runtime.groupcommit`): one statement claims every attempt
waiting to be claimed. A success is committed by the step that applies its events
when the runner works for the engine (``settle_in_step``: ``completions.py``), else
with its events in one transaction for every attempt waiting to be finished.
Failures, rarer and each with its own retry arithmetic, go one by one.

Timers are tasks too: claiming a due timer delivers its event.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from statefleet.engine.handlers import (
    MANUAL_TYPES,
    Emit,
    HandlerRegistry,
    HandlerResult,
    PermanentTaskError,
    TaskContext,
    UnknownTaskType,
)
from statefleet.engine.ports.queue import TaskSuccess
from statefleet.engine.record import record
from statefleet.engine.runtime.audit import append_event
from statefleet.engine.runtime.completions import Completed, commit, completed_of
from statefleet.engine.runtime.groupcommit import GroupCommit
from statefleet.engine.runtime.instances import event_outbox_row
from statefleet.engine.runtime.observe import Observer
from statefleet.engine.runtime.outbox import OutboxRow, OutboxSink, insert_outbox, task_attempt_row
from statefleet.engine.store.db import (
    Connection,
    Pool,
    Record,
    json_text,
    read_uuid,
)
from statefleet.engine.store.queries import load_queries

__all__ = ["TaskRunner", "TaskRunnerSettings", "backoff_ms", "completion_payload"]

log = logging.getLogger(__name__)

SQL = {**load_queries("tasks.sql"), **load_queries("instances.sql")}
MANUAL = sorted(MANUAL_TYPES)


class TaskRow(Protocol):
    """A claimed task's row: an asyncpg record (claim_tasks) or the dict of one that
    travelled to this runner with its job (claim_admitted, admission.py)."""

    def __getitem__(self, key: str, /) -> Any: ...


@record
class TaskRunnerSettings:
    #: Longest lease of an attempt, renewed by the heartbeat every third of it while the
    #: handler runs; a dead worker's task is free again within this long.
    default_lease_ms: int = 15_000
    #: Extra lease beyond a task's ``timeout``, for committing its result (a task whose
    #: timeout plus margin is shorter than the default lease gets that).
    lease_margin_ms: int = 5_000
    #: Upper bound of one retry delay, whatever the backoff says.
    max_backoff_ms: int = 3_600_000
    #: Most claims (and, separately, finishes) written by one statement.
    group_commit_max: int = 256


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
        pool: Pool,
        registry: HandlerRegistry,
        publisher: OutboxSink,
        *,
        worker_id: str | None = None,
        settings: TaskRunnerSettings | None = None,
        observer: Observer | None = None,
        settle_in_step: bool = False,
    ) -> None:
        """``settle_in_step``: a success with events leaves uncommitted, as rows carrying
        it (``TaskSuccess``), for the step that applies them to commit: for a runner
        whose rows go to the engine (``Engine.route``), never to a plain publisher."""
        self.settle_in_step = settle_in_step
        self.observer = observer
        self.pool = pool
        self.registry = registry
        self.publisher = publisher
        self.worker_id = worker_id or f"worker-{uuid.uuid4()}"
        self.settings = settings or TaskRunnerSettings()
        most = self.settings.group_commit_max
        self._claims = GroupCommit(self._claim_many, max_batch=most, max_in_flight=2)
        self._successes = GroupCommit(self._commit_successes, max_batch=most, max_in_flight=2)
        #: Attempts claimed and not yet finished, with their lease (ms): the heartbeat's.
        self._leased: dict[tuple[str, uuid.UUID], int] = {}
        #: Of those, successes left for a step to commit (``settle_in_step``): renewed
        #: until the caller :meth:`drop`\ s them, once it has their rows to send on (a
        #: pool's batch returns when its last handler has, and a fast attempt's lease
        #: must not expire while it waits for a slow one).
        self._unsettled: set[tuple[str, uuid.UUID]] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    def hold(self, claims: Sequence[tuple[str, uuid.UUID, TaskRow]]) -> None:
        """Attempts claimed for this runner by someone else (the admitter, under
        :attr:`worker_id`): their leases are renewed from now on, while they wait for a
        slot, until :meth:`run` runs them (or :meth:`drop` gives them up)."""
        for tenant_id, task_id, task in claims:
            self._leased[(tenant_id, task_id)] = self._lease_ms(task)
        if claims:
            self._start_heartbeat()

    def drop(self, tenant_id: str, task_id: uuid.UUID) -> None:
        """Stops renewing a lease: a held attempt's that will not run here, or a success
        left for a step to commit, whose rows the caller now sends on."""
        self._leased.pop((tenant_id, task_id), None)
        self._unsettled.discard((tenant_id, task_id))

    async def run(
        self,
        tenant_id: str,
        task_id: str,
        *,
        sink: OutboxSink | None = None,
        claimed: TaskRow | None = None,
        handled: Callable[[], None] = lambda: None,
    ) -> str:
        """Runs one attempt of the task if it can be claimed; returns what happened.

        ``claimed``: the task's row as claimed for this runner already (see :meth:`hold`);
        the attempt then runs without a claim of its own. ``handled`` is called once the
        handler has returned or raised (a timer has none: at once), before the outcome is
        committed: the executor frees the attempt's slot there, so a type's limit bounds
        its handlers, not its handlers plus their commits. Never raises for a handler's
        failure (that is recorded on the task); raises only on infrastructure errors, so
        the job is redelivered. The attempt's committed outbox rows go to ``sink``
        (default: the runner's publisher), so callers sharing one runner can each
        collect their own.
        """
        started = time.perf_counter()
        seen_type: list[str] = []  # filled once the task is claimed (runs share this object)
        outcome = await self._run(
            tenant_id, task_id, seen_type, sink or self.publisher, claimed, handled
        )
        if self.observer is not None:
            task_type = seen_type[0] if seen_type else "-"
            self.observer.task_finished(task_type, outcome, time.perf_counter() - started)
        return outcome

    async def _run(
        self,
        tenant_id: str,
        task_id: str,
        seen_type: list[str],
        sink: OutboxSink,
        claimed: TaskRow | None,
        handled: Callable[[], None],
    ) -> str:
        try:
            task_uuid = read_uuid(task_id)
        except ValueError:
            return "unknown"
        task = claimed if claimed is not None else await self._claims.submit((tenant_id, task_uuid))
        if task is None:
            return await self._not_claimed(tenant_id, task_uuid, sink)
        seen_type.append(task["type"] if task["kind"] == "task" else "timer")
        key = (tenant_id, task_uuid)
        self._leased[key] = self._lease_ms(task)
        self._start_heartbeat()
        try:
            return await self._attempt(tenant_id, task_id, task, sink, handled)
        finally:
            if key not in self._unsettled:
                self._leased.pop(key, None)

    def _lease_ms(self, task: TaskRow) -> int:
        """The attempt's lease, as claim_tasks computed it."""
        s = self.settings
        timeout: int | None = task["timeout_ms"]
        if timeout is None:
            return s.default_lease_ms
        return min(timeout + s.lease_margin_ms, s.default_lease_ms)

    def _start_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.create_task(self._beat(), name="statefleet-lease-heartbeat")

    async def _beat(self) -> None:
        """Renews every running attempt's lease, every third of the shortest, in one
        statement, until none is left: a handler that runs longer than its lease keeps
        its claim, while a dead worker's attempts are free again within one lease."""
        while self._leased:
            await asyncio.sleep(min(self._leased.values()) / 3000)
            leased = list(self._leased.items())
            if not leased:
                return
            try:
                async with self.pool.acquire() as connection:
                    await connection.execute(
                        SQL["renew_leases"],
                        [tenant for (tenant, _), _ in leased],
                        [task_id for (_, task_id), _ in leased],
                        [ms for _, ms in leased],
                        self.worker_id,
                    )
            except Exception:
                log.warning(
                    "renewing %d task lease(s) failed; retrying", len(leased), exc_info=True
                )

    async def release_previous_claims(self, identity: str) -> list[OutboxRow]:
        """Expires the leases a previous life of this worker (same ``identity``) held.

        Returns the jobs that run those tasks again, for the caller to send on; the
        sweeper re-sends them anyway if they are lost.
        """
        async with self.pool.acquire() as connection:
            released = await connection.fetch(
                SQL["release_previous_claims"], identity, self.worker_id
            )
        if released:
            log.warning(
                "gave up %d task claim(s) of this pool's previous life (%s)",
                len(released),
                identity,
            )
        return [
            task_attempt_row(
                r["tenant_id"],
                r["id"],
                r["attempts"] + 1,
                instance_id=r["instance_id"],
                db_now=r["db_now"],
            )
            for r in released
        ]

    async def _attempt(
        self,
        tenant_id: str,
        task_id: str,
        task: TaskRow,
        sink: OutboxSink,
        handled: Callable[[], None],
    ) -> str:
        if task["kind"] == "timer":
            handled()
            await self._finish(task, None, task["type"], {}, (), sink)
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
            try:
                async with asyncio.timeout(timeout):
                    output = await handler(context)
            finally:
                handled()
        except (PermanentTaskError, UnknownTaskType) as exc:
            await self._failed(task, f"{type(exc).__name__}: {exc}", final=True, sink=sink)
            return "failed"
        except TimeoutError:
            message = f"timed out after {task['timeout_ms']} ms"
            final = task["attempts"] >= task["max_attempts"]
            await self._failed(task, message, final=final, sink=sink)
            return "failed" if final else "retrying"
        except Exception as exc:
            final = task["attempts"] >= task["max_attempts"]
            await self._failed(task, f"{type(exc).__name__}: {exc}", final=final, sink=sink)
            return "failed" if final else "retrying"
        emit: tuple[Emit, ...] = ()
        if isinstance(output, HandlerResult):
            output, emit = output.output, output.emit
        if task["type"] == "AI" and self.observer is not None and isinstance(output, dict):
            rejected = "rejected" if output.get("rejected") else "withheld"
            self.observer.ai_decided("emitted" if output.get("emitted") else rejected)
        event = task["completion_event"]
        await self._finish(task, output, event, completion_payload(output), emit, sink)
        return "succeeded"

    async def _claim_many(self, keys: Sequence[tuple[str, uuid.UUID]]) -> list[Record | None]:
        async with self.pool.acquire() as connection:
            records = await connection.fetch(
                SQL["claim_tasks"],
                [tenant for tenant, _ in keys],
                [task_id for _, task_id in keys],
                self.worker_id,
                self.settings.default_lease_ms,
                MANUAL,
                self.settings.lease_margin_ms,
            )
        claimed = {(r["tenant_id"], r["id"]): r for r in records}
        # One claim, one runner: a task asked for twice goes to the first asker only.
        return [claimed.pop(key, None) for key in keys]

    async def _not_claimed(self, tenant_id: str, task_id: uuid.UUID, sink: OutboxSink) -> str:
        """A job for a task that is not claimable: early (re-enqueue) or already settled."""
        async with self.pool.acquire() as connection:
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
        await sink.publish([row])
        return "not_due"

    async def _finish(
        self,
        task: TaskRow,
        output: Any,
        deliver: str | None,
        payload: dict[str, Any],
        emit: tuple[Emit, ...],
        sink: OutboxSink,
    ) -> None:
        # Serialised here: a value that cannot be fails its own attempt, not the whole
        # group of successes it would have joined.
        output_json = json_text(output)
        json_text([dict(e.payload) for e in emit])  # the same for emitted payloads
        success, rows = _success_rows(task, output_json, deliver, payload, emit, self.worker_id)
        if self.settle_in_step and rows:
            self._unsettled.add((task["tenant_id"], task["id"]))
            await sink.publish(rows)
            return
        committed = await self._successes.submit((task["tenant_id"], success, rows))
        if committed:
            await sink.publish(committed)

    async def settle_alone(self, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
        """Commits the successes ``rows`` carry without a step (``completions.commit``,
        group-committed with other attempts' successes); returns their events as stored
        outbox rows. For successes left for a step that is too long in coming."""
        results = await asyncio.gather(*(self._successes.submit(c) for c in completed_of(rows)))
        return [row for batch in results if batch for row in batch]

    async def _commit_successes(
        self, completed: Sequence[Completed]
    ) -> list[list[OutboxRow] | None]:
        return await commit(self.pool, completed)

    async def _failed(self, task: TaskRow, message: str, *, final: bool, sink: OutboxSink) -> None:
        tenant_id, task_id = task["tenant_id"], task["id"]
        # One line per failed attempt, with its error: a task that keeps failing (an AI
        # provider down, say) must show in the logs before it fails for good.
        log.warning(
            "task %s (%s %r) attempt %d/%d failed: %s; %s",
            task_id,
            task["type"],
            task["name"],
            task["attempts"],
            task["max_attempts"],
            message,
            "no retry left" if final else "retrying",
            extra={
                "tenant_id": tenant_id,
                "instance_id": str(task["instance_id"]),
                "task_id": str(task_id),
            },
        )
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
                if retry["held"]:  # the admitter hands it to a pool again when it is due
                    return
                outbox = [
                    task_attempt_row(
                        tenant_id,
                        task_id,
                        retry["attempts"] + 1,
                        instance_id=task["instance_id"],
                        run_at=retry["run_at"],
                        db_now=retry["db_now"],
                    )
                ]
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
        await sink.publish(outbox)

    async def _fail_instance(self, connection: Connection, task: TaskRow, message: str) -> None:
        """No failureEvent: the instance fails with the reason, and the audit log says why."""
        error = f"task '{task['name']}' ({task['type']}) failed: {message}"
        stopped = await connection.fetchrow(
            SQL["fail_instance"], task["tenant_id"], task["instance_id"], error
        )
        if stopped is None:
            return
        await append_event(
            connection,
            task["tenant_id"],
            task["instance_id"],
            f"task-{task['id']}-failed",
            "statefleet.task.failed",
            {"taskId": str(task["id"]), "name": task["name"], "error": message},
            stopped["snapshot"].get("value"),
            error,
        )
        await connection.execute(
            SQL["cancel_open_tasks_of_instances"], [task["tenant_id"]], [task["instance_id"]]
        )


def _success_rows(
    task: TaskRow,
    output_json: str | None,
    deliver: str | None,
    payload: dict[str, Any],
    emit: tuple[Emit, ...],
    owner: str,
) -> tuple[TaskSuccess, list[OutboxRow]]:
    """A successful attempt, and the events it sends its instance (emitted ones, then its
    completion) as rows not stored yet, each carrying the success."""
    tenant_id, task_id, instance_id = task["tenant_id"], task["id"], task["instance_id"]
    prefix = "timer" if task["kind"] == "timer" else "task"
    done_id = f"{prefix}-{task_id}-done" if deliver else None
    success = TaskSuccess(task_id, owner, output_json, done_id)
    rows = [
        event_outbox_row(
            tenant_id,
            instance_id,
            f"task-{task_id}-emit-{index}",
            emitted.type,
            dict(emitted.payload),
            stored=False,
            success=success,
        )
        for index, emitted in enumerate(emit)
    ]
    if deliver and done_id:
        rows.append(
            event_outbox_row(
                tenant_id, instance_id, done_id, deliver, payload, stored=False, success=success
            )
        )
    return success, rows
