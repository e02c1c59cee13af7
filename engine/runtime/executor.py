"""Task execution for the executor pools: batches of task jobs, bounded per task type.

An :class:`TaskExecutor` runs a batch of task jobs concurrently through
:class:`TaskRunner`, each job waiting first for a slot of its task type (a semaphore
per type: ``limits`` or ``default_limit``), so a slow type (an AI call) cannot take
every slot from a fast one; interactive jobs get a free slot before jobs the admitter
handed over (``slots.py``). The type is read before the claim, so a job waiting for
a slot holds no lease; the slot is given back when the handler returns, not when its
outcome has committed, so a type's limit bounds its handlers (with a slot held through
the commit, 64 slots of a fast type were mostly waiting for group commits: the
in-process hello ran about a tenth faster without). The outbox rows the attempts
commit (retries, failure events) are returned, not published: a Ray actor hosting
this cannot reach a process-local queue, and the engine loop sends them on
(``engine.py``). So are a success's events, uncommitted: the step that applies them
commits the success (``completions.py``).

Plain asyncio, Ray-free; one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from statefleet.engine import tracing
from statefleet.engine.handlers import HandlerRegistry
from statefleet.engine.ports.queue import TaskJobData
from statefleet.engine.record import record
from statefleet.engine.runtime.observe import Observer
from statefleet.engine.runtime.outbox import CollectingPublisher, OutboxRow
from statefleet.engine.runtime.slots import Slots
from statefleet.engine.runtime.tasks import TaskRunner, TaskRunnerSettings
from statefleet.engine.store.db import Pool, read_uuid
from statefleet.engine.store.queries import load_queries

__all__ = ["ExecutorResult", "ExecutorSettings", "TaskExecutor"]

log = logging.getLogger(__name__)
SQL = load_queries("executor.sql")
TIMER_SLOT = "timer"
#: How long a success waits for its batch to return before its pool commits it alone
#: (:class:`_Deferred`).
SETTLE_WAIT_S = 1.0


@record
class ExecutorSettings:
    #: Attempts of one task type running at once, per executor.
    default_limit: int = 32
    #: Per-type overrides of ``default_limit``.
    limits: Mapping[str, int] = field(default_factory=dict)
    tasks: TaskRunnerSettings = field(default_factory=TaskRunnerSettings)


@dataclass(slots=True)
class ExecutorResult:
    """What happened to each job (``TaskRunner.run``'s word, or ``error``), rows to publish."""

    results: list[str]
    outbox: list[OutboxRow]
    failed: list[int]


class TaskExecutor:
    def __init__(
        self,
        pool: Pool,
        registry: HandlerRegistry,
        settings: ExecutorSettings | None = None,
        *,
        worker_id: str | None = None,
        observer: Observer | None = None,
        identity: str | None = None,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.settings = settings or ExecutorSettings()
        #: What stays the same when this executor's process is restarted (a named Ray
        #: actor's name); its lease owner is "<identity>/<this life>", so a new life can
        #: give up the claims of the old one at once (see run_batch).
        self.identity = identity
        life = f"{identity}/{os.getpid()}-{uuid.uuid4().hex[:8]}" if identity else None
        self.worker_id = worker_id or life or f"executor-{uuid.uuid4()}"
        self._released = identity is None
        self._slots: dict[str, Slots] = {}
        #: See :class:`_Deferred`.
        self.settle_wait_s = SETTLE_WAIT_S
        # One runner for every job, so that their claims and finishes group-commit;
        # each job collects its own outbox rows through run(sink=...).
        self._runner = TaskRunner(
            pool,
            registry,
            CollectingPublisher(),
            worker_id=self.worker_id,
            settings=self.settings.tasks,
            observer=observer,
            settle_in_step=True,
        )

    def _slot(self, task_type: str) -> Slots:
        slot = self._slots.get(task_type)
        if slot is None:
            limit = self.settings.limits.get(task_type, self.settings.default_limit)
            slot = self._slots[task_type] = Slots(limit)
        return slot

    async def run_batch(self, jobs: Sequence[TaskJobData]) -> ExecutorResult:
        """Runs one attempt of each job's task (those that can be claimed), concurrently.

        A job the admitter claimed for this life of this pool (``TaskJobData.claim``)
        runs without a claim of its own; its lease is renewed from now on, while it
        waits for a slot.

        Never raises for a job: an infrastructure error on one job is logged and
        its index listed in ``failed`` (its caller redelivers it); the rows every
        other job committed are returned either way.
        """
        collected: list[OutboxRow] = []
        if not self._released and self.identity is not None:
            # The first batch of a new life: what the previous one held runs again now.
            # Marked first: batches arrive concurrently, and one release is enough.
            self._released = True
            try:
                collected.extend(await self._runner.release_previous_claims(self.identity))
            except BaseException:
                self._released = False
                raise
        claims = self._claims(jobs)
        if self.identity is not None and any(
            c is None and j.claim is not None for c, j in zip(claims, jobs, strict=True)
        ):
            # Claimed for an earlier life of this pool (the engine learns the new owner
            # from this reply): those leases expire now, and the ordinary claim below
            # takes the tasks at once instead of after their lease.
            collected.extend(await self._runner.release_previous_claims(self.identity))
        self._runner.hold(
            [(j.tenant_id, c["id"], c) for c, j in zip(claims, jobs, strict=True) if c]
        )
        types = await self._types(jobs)
        failed: list[int] = []

        deferred = _Deferred(self._runner, self.settle_wait_s)
        unfinished = len(jobs)
        # The leases this batch holds until it returns: the claims it came with (their
        # wait for a slot may be cancelled), and the attempts whose success it leaves
        # for a step to commit (TaskRunner._unsettled), for the engine to send on.
        leased = [(j.tenant_id, c["id"]) for c, j in zip(claims, jobs, strict=True) if c]

        async def one(index: int, job: TaskJobData) -> str:
            nonlocal unfinished
            task_type = job.task_type or types.get(
                (job.tenant_id, _canonical(job.task_id)), "unknown"
            )
            claim = claims[index]
            publisher = CollectingPublisher()
            async with self._slot(task_type).held(admitted=job.admitted) as release:
                span = tracing.start_span(
                    f"statefleet.task {task_type}",
                    job.trace,
                    {"statefleet.tenant_id": job.tenant_id, "statefleet.task_id": job.task_id},
                )
                try:
                    with tracing.current(span):
                        result = await self._runner.run(
                            job.tenant_id,
                            job.task_id,
                            sink=publisher,
                            claimed=claim,
                            handled=release,
                        )
                        span.set_attribute("statefleet.outcome", result)
                except Exception:
                    log.exception("task %s: infrastructure error", job.task_id)
                    failed.append(index)
                    result = "error"
                finally:
                    unfinished -= 1
                    # Made inside the attempt's span (tracing.current above): the
                    # events it sends its instance continue its trace.
                    unsettled: list[OutboxRow] = []
                    for row in publisher.take():
                        if row.event is not None and row.event.success is not None:
                            unsettled.append(row)
                        else:
                            collected.append(row)
                    if unsettled:
                        deferred.add(unsettled, batch_running=unfinished > 0)
                        leased.append((job.tenant_id, read_uuid(job.task_id)))
            return result

        try:
            results = await asyncio.gather(*(one(i, job) for i, job in enumerate(jobs)))
            collected.extend(await deferred.close())
        finally:
            deferred.cancel()
            for tenant_id, task_id in leased:
                self._runner.drop(tenant_id, task_id)
        return ExecutorResult(list(results), collected, sorted(failed))

    def _claims(self, jobs: Sequence[TaskJobData]) -> list[dict[str, Any] | None]:
        """Per job, the claim it came with if it was made for this life of this pool."""
        return [
            job.claim
            if job.claim is not None and job.claim.get("lease_owner") == self.worker_id
            else None
            for job in jobs
        ]

    async def _types(self, jobs: Sequence[TaskJobData]) -> dict[tuple[str, str], str]:
        """The slot of each task whose job does not carry its type: read from its row."""
        keys: list[tuple[str, uuid.UUID]] = []
        for job in jobs:
            if job.task_type is not None:
                continue
            try:
                keys.append((job.tenant_id, read_uuid(job.task_id)))
            except ValueError:
                continue
        if not keys:
            return {}
        async with self.pool.acquire() as connection:
            records = await connection.fetch(
                SQL["task_types"], [t for t, _ in keys], [i for _, i in keys]
            )
        return {
            (r["tenant_id"], str(r["id"])): TIMER_SLOT if r["kind"] == "timer" else r["type"]
            for r in records
        }


class _Deferred:
    """The successes of a batch still running, left for the steps that apply their events.

    A batch returns when its last handler has, and only then does the engine get its
    rows: a fast attempt's success would wait for the slowest handler of its batch (an
    AI call, a human-paced one), and with no outbox row the sweeper cannot send its
    events meanwhile. So every ``wait_s`` while the batch runs, the successes waiting
    are committed here, alone, as before this path existed (``TaskRunner.settle_alone``):
    their events become stored outbox rows, which the sweeper publishes if the batch
    takes longer still. A batch that returns sooner (most: its handlers run together)
    leaves all of them to the steps.
    """

    def __init__(self, runner: TaskRunner, wait_s: float) -> None:
        self._runner = runner
        self._wait_s = wait_s
        self._rows: list[OutboxRow] = []
        self._committed: list[OutboxRow] = []
        self._closed = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None

    def add(self, rows: list[OutboxRow], *, batch_running: bool) -> None:
        """Rows of one success; ``batch_running``: other jobs of the batch are still
        running (if none is, the batch returns now and nothing needs watching)."""
        self._rows.extend(rows)
        if self._watch is None and batch_running:
            self._watch = asyncio.create_task(self._commit_late(), name="statefleet-settle-late")

    async def _commit_late(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._closed.wait(), self._wait_s)
                return
            except TimeoutError:
                pass
            rows, self._rows = self._rows, []
            if not rows:
                continue
            try:
                self._committed += await self._runner.settle_alone(rows)
            except Exception:
                log.warning("committing %d waiting success row(s) failed", len(rows))
                self._rows[:0] = rows

    async def close(self) -> list[OutboxRow]:
        """Stops committing (a commit under way completes first); returns the rows for
        the engine: those committed here (stored), then those still waiting for their
        step."""
        self._closed.set()
        if self._watch is not None:
            await self._watch
        return self._committed + self._rows

    def cancel(self) -> None:
        if self._watch is not None:
            self._watch.cancel()


def _canonical(task_id: str) -> str:
    try:
        return str(read_uuid(task_id))
    except ValueError:
        return task_id
