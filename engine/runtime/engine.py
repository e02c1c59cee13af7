"""The engine loop: queue jobs in, one call per shard (or pool) per batch, results on.

There is one loop, whatever hosts the shards and pools (see ``ports/backend.py``):
in this process (tests, one-process runs) or Ray actors (``statefleet up``, ``worker``).

- It consumes ``workflow-orchestrator`` in batches and routes each event to the shard
  owning its instance, ``stable_hash(instance id) % shards``: one call per shard with
  that shard's share of the batch, all shards at once.
- It consumes ``workflow-task-runner`` in batches and hands each batch to the next pool.
- What the shards' and pools' commits wrote to the outbox is sent on by :meth:`route`:
  a task its step created claimed for a pool (the engine asked for that with the
  events: ``TaskClaim``) is handed to that pool directly, other task jobs go to the
  queue; events the engine made itself (a task's completion or
  failure, a timer) go straight to their shard, skipping the broker, and their outbox
  rows are then deleted (the audit log holds the event). The outbox row is committed
  before any of this, so a failed direct delivery only delays the event: the sweeper
  publishes unpublished rows through the broker after ``sweep_grace_ms``. A task's
  success has no row yet: its events carry it, the step applying them commits it, and
  if their shard call fails the engine commits it without a step (``completions.py``).
- Only then is the queue batch acknowledged; jobs of a failed call are redelivered.
- It runs the sweeper and the scheduler (due schedules start their instances), and
  records jobs that can never succeed as dead letters.
- It stores what its shards and pools counted (its :class:`Tally`) under its random
  ``engine_id`` every ``metrics_flush_ms`` and when it stops (``tally_store.py``), so a
  process running no engine (``statefleet api``) can show the cluster's figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from statefleet.engine.ports.backend import Backend, PoolReply, ShardReply, TaskClaim
from statefleet.engine.ports.queue import (
    ORCHESTRATOR_QUEUE,
    TASK_RUNNER_QUEUE,
    Consumer,
    EventJobData,
    MalformedJobError,
    PartialBatchFailure,
    Queue,
    QueueJob,
    TaskJobData,
    TaskSuccess,
    parse_event_job,
    parse_task_job,
)
from statefleet.engine.runtime.admission import Admitter, expire_claims
from statefleet.engine.runtime.completions import commit, completed_of
from statefleet.engine.runtime.gc_tuning import tune_gc
from statefleet.engine.runtime.instances import InstanceRuntime
from statefleet.engine.runtime.machines import MachineCache
from statefleet.engine.runtime.outbox import OutboxRow, Publisher, insert_dead_letter
from statefleet.engine.runtime.schedules import Scheduler
from statefleet.engine.runtime.service import WorkflowService
from statefleet.engine.runtime.settings import EngineSettings
from statefleet.engine.runtime.sweeper import Sweeper
from statefleet.engine.runtime.tally import Tally
from statefleet.engine.runtime.tally_store import TallyFlusher
from statefleet.engine.store.db import Pool

__all__ = ["Engine", "stable_hash"]

log = logging.getLogger(__name__)
#: How long :meth:`Engine.start` waits for its shards and pools to come up.
READY_WAIT_S = 30.0
#: What an event came with: its queue job, or its outbox row.
_Item = TypeVar("_Item", QueueJob, OutboxRow)


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the shards and pools did not start", exc_info=task.exception())


def stable_hash(key: str) -> int:
    """A hash that is the same in every process and run (Python's ``hash`` is salted)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


class Engine:
    """The engine loop over ``backend``; :meth:`start`, then :meth:`stop`.

    ``pool`` is this process's database pool (publishing, the sweeper, dead letters);
    the backend's shards and pools commit through their own (or share this one).
    ``runtime`` starts instances from this process (the API's, when it embeds the
    engine, and the scheduler's): its sends go through the queue, like the API's, and
    the tasks its interactive starts create run on this engine's pools
    (:meth:`claim_for_start`).
    """

    def __init__(
        self,
        pool: Pool,
        queue: Queue,
        backend: Backend,
        settings: EngineSettings | None = None,
    ) -> None:
        self.pool = pool
        self.queue = queue
        self.backend = backend
        self.settings = settings or EngineSettings()
        self.publisher = Publisher(pool, queue)
        self.runtime = InstanceRuntime(
            pool,
            self.publisher,
            MachineCache(),
            step_limits=self.settings.step_limits(),
            tasks_here=self,
        )
        s = self.settings
        self.sweeper = Sweeper(
            pool,
            self.publisher,
            interval_ms=s.sweep_interval_ms,
            grace_ms=s.sweep_grace_ms,
            event_grace_ms=s.sweep_event_grace_ms,
        )
        #: Starts the instances of due schedules, through the service like the API's.
        self.scheduler = Scheduler(
            pool, WorkflowService(pool, self.runtime), poll_ms=s.schedule_poll_ms
        )
        self._next_pool = itertools.cycle(range(max(1, backend.pool_count)))
        #: Each pool's lease owner, learnt from Backend.ready and from every reply (a
        #: restarted pool has a new one): the admitter claims tasks for a pool under it.
        self._pool_owners: list[str | None] = [None] * backend.pool_count
        self._readying: asyncio.Task[None] | None = None
        self._consumers: list[Consumer] = []
        #: Events delivered straight to their shard (skipping the broker) so far.
        self.delivered_direct = 0
        # Monotonic times of the last backend call that succeeded and that failed.
        self._backend_ok = time.monotonic()
        self._backend_failed = 0.0
        #: Everything the shards and pools counted, added from each reply (tally.py).
        self.tally = Tally()
        #: This loop's name in ``engine_tallies``: random, one per tally (so per loop).
        self.engine_id = uuid.uuid4().hex
        #: Stores the tally every ``metrics_flush_ms`` and once more at :meth:`stop`.
        self.tally_flusher = TallyFlusher(
            pool, self.engine_id, self.tally, interval_ms=s.metrics_flush_ms
        )
        #: Hands held work (batches below the interactive priority, limited tasks) to the
        #: shards and pools in weighted fair order, within the task limits.
        self.admitter = Admitter(
            pool,
            deliver_events=self._deliver_held,
            run_tasks=self._run_admitted if backend.pool_count else None,
            pick_pool=self._pick_pool if backend.pool_count else None,
            tally=self.tally,
            settings=s.admission(),
        )
        #: Jobs being handled right now, by queue: what a draining stop waits for.
        self.in_flight: dict[str, int] = {ORCHESTRATOR_QUEUE: 0, TASK_RUNNER_QUEUE: 0}
        #: Tasks claimed where they were created and handed to a pool, not back from it
        #: yet (``task_handover_limit``), and the hand-overs running (their completions
        #: included).
        self.handed_over = 0
        self._handovers: set[asyncio.Task[None]] = set()

    def shard_of(self, instance_id: str) -> int:
        return stable_hash(instance_id) % self.backend.shard_count

    # -- life cycle ---------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        tune_gc(s.gc_gen0_threshold)
        await self._wait_for_backend()
        self._consumers = [
            await self.queue.consume_batches(
                ORCHESTRATOR_QUEUE,
                self._counted(ORCHESTRATOR_QUEUE, self.on_events),
                max_batch_size=s.event_batch_size,
                max_wait_ms=s.event_batch_wait_ms,
                concurrency=s.event_concurrency,
            )
        ]
        if self.backend.pool_count:
            self._consumers.append(
                await self.queue.consume_batches(
                    TASK_RUNNER_QUEUE,
                    self._counted(TASK_RUNNER_QUEUE, self.on_tasks),
                    max_batch_size=s.task_batch_size,
                    max_wait_ms=s.task_batch_wait_ms,
                    concurrency=s.task_concurrency,
                )
            )
        self.sweeper.start()
        self.scheduler.start()
        self.admitter.start()
        self.tally_flusher.start()

    async def _wait_for_backend(self) -> None:
        """Lets the shards and pools come up before any work is taken (``Backend.ready``).

        A fresh Ray cluster otherwise starts its actors' processes under the first
        batch, on the cores that batch needs. A shard or pool that cannot start (a
        database its node cannot reach) fails the start with its error instead of every
        first batch; one still starting after ``READY_WAIT_S`` (waiting for an
        autoscaler's node) is left to come up while the work waits for it, as before.
        """
        ready = asyncio.ensure_future(self._learn_owners())
        try:
            await asyncio.wait_for(asyncio.shield(ready), READY_WAIT_S)
        except TimeoutError:
            log.warning(
                "shards and pools not ready after %.0f s; starting anyway (their work waits)",
                READY_WAIT_S,
            )
            self._readying = ready  # the pools' owners come when they are up
            ready.add_done_callback(_log_failure)

    async def _learn_owners(self) -> None:
        for index, owner in enumerate(await self.backend.ready()):
            self._pool_owners[index] = owner

    def _pick_pool(self) -> tuple[int, str] | None:
        """The pool the admitter's next tasks go to, and its lease owner (None until
        that pool's owner is known: the tasks then wait in Postgres a little longer)."""
        index = next(self._next_pool)
        owner = self._pool_owners[index]
        return None if owner is None else (index, owner)

    def _pool_replied(self, index: int, reply: PoolReply) -> None:
        self._note(ok=True)
        if reply.owner is not None:
            self._pool_owners[index] = reply.owner
        if reply.tally is not None:
            self.tally.add(reply.tally)

    def _counted(
        self, queue: str, handler: Callable[[list[QueueJob]], Awaitable[None]]
    ) -> Callable[[list[QueueJob]], Awaitable[None]]:
        async def counted(jobs: list[QueueJob]) -> None:
            self.in_flight[queue] += len(jobs)
            try:
                await handler(jobs)
            finally:
                self.in_flight[queue] -= len(jobs)

        return counted

    def describe_in_flight(self) -> str:
        """``3 event job(s) and 12 task job(s)``: what a draining stop still waits for
        (the tasks handed over to pools directly count as task jobs)."""
        events = self.in_flight[ORCHESTRATOR_QUEUE]
        tasks = self.in_flight[TASK_RUNNER_QUEUE] + self.handed_over
        return f"{events} event job(s) and {tasks} task job(s)"

    async def stop(
        self, timeout_s: float | None = None, say: Callable[[str], None] | None = None
    ) -> None:
        """Stops consuming and the sweeper; in-flight batches get ``timeout_s`` to finish.

        Every second it says (``say``, default: the log) what it still waits for. Jobs
        not finished when the time is up are left unacknowledged: the broker delivers
        them again (BullMQ: as stalled jobs; Cloud Tasks: the push failed), and what
        they were doing is in Postgres already (the outbox and task rows the sweeper
        re-sends), so nothing is lost. Then stores the tally a last time. Closes
        nothing else.
        """
        try:
            await self._drain(timeout_s, say)
        finally:
            # After the drain, so the last batches' counts are in it.
            await self.tally_flusher.stop()

    async def _drain(self, timeout_s: float | None, say: Callable[[str], None] | None) -> None:
        report = say or log.info
        if self._readying is not None:
            self._readying.cancel()
        await self.sweeper.stop()
        await self.scheduler.stop()
        await self.admitter.stop(timeout_s if timeout_s is not None else 10.0)
        consumers, self._consumers = self._consumers, []
        stopping = asyncio.ensure_future(self._stop_consuming(consumers))
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            wait = 1.0 if left is None else max(0.0, min(1.0, left))
            done, _ = await asyncio.wait({stopping}, timeout=wait)
            if done:
                stopping.result()
                return
            if left is not None and left <= wait:
                report(
                    f"drain: gave up after {timeout_s:g} s with {self.describe_in_flight()} "
                    "in flight; they stay unacknowledged and are delivered again"
                )
                stopping.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await stopping
                return
            remaining = "" if left is None else f" ({max(0.0, left - wait):.0f} s left)"
            report(f"drain: waiting for {self.describe_in_flight()}{remaining}")

    async def _stop_consuming(self, consumers: Sequence[Consumer]) -> None:
        """Stops the consumers, then waits for the tasks handed over to pools (the last
        batches may hand over more). Cancelled when the drain gives up: a cancelled hand-
        over's tasks keep their claims until their leases expire (15 s by default), and
        the sweeper re-sends them then."""
        try:
            await asyncio.gather(*(c.stop() for c in consumers))
            while self._handovers:
                await asyncio.gather(*self._handovers, return_exceptions=True)
        except asyncio.CancelledError:
            for task in list(self._handovers):
                task.cancel()
            await asyncio.gather(*self._handovers, return_exceptions=True)
            raise

    async def close(self) -> None:
        """:meth:`stop`, then closes the backend (its shards and pools)."""
        await self.stop()
        await self.backend.close()

    def alive(self, now: float | None = None) -> bool:
        """The loop is consuming and its sweeper passes on schedule (failed passes count).

        What a liveness probe asks: a worker whose loop stopped is restarted by its
        orchestrator, while one whose dependencies are down is only "not ready".
        """
        now = time.monotonic() if now is None else now
        looping = bool(self._consumers) and now - self.sweeper.last_pass < self._late()
        return looping and not self.backend_lost(now)

    def backend_lost(self, now: float | None = None) -> bool:
        """Calls to shards and pools have only failed for a while.

        The backend is then gone for good (a lost Ray Client session, a cluster torn
        down): a restarted worker reconnects, a waiting one never does.
        """
        now = time.monotonic() if now is None else now
        failing = self._backend_failed > self._backend_ok
        return failing and now - self._backend_ok > self._late()

    def _late(self) -> float:
        return max(30.0, 6 * self.settings.sweep_interval_ms / 1000)

    def _note(self, ok: bool) -> None:
        if ok:
            self._backend_ok = time.monotonic()
        else:
            self._backend_failed = time.monotonic()

    async def stats(self) -> list[dict[str, int]]:
        """Each shard's counters (resident checkpoints, peak, actors, commits)."""
        return await self.backend.stats()

    # -- the two queues -----------------------------------------------------------------

    async def on_events(self, jobs: list[QueueJob]) -> None:
        """One call per shard with that shard's events; fails only the jobs of a failed call."""
        parsed: list[tuple[QueueJob, EventJobData]] = []
        for job in jobs:
            try:
                parsed.append((job, parse_event_job(job)))
            except MalformedJobError as error:
                await self.dead_letter(None, job, str(error))
        failed = await self._apply(parsed)
        if failed:
            raise PartialBatchFailure(failed)

    async def _apply(self, parsed: Sequence[tuple[_Item, EventJobData]]) -> list[_Item]:
        """Applies events on their shards and routes what the commits wrote; returns the
        items (queue jobs, outbox rows) of the shard calls that failed."""
        failed: list[_Item] = []
        rows: list[OutboxRow] = []
        for index, sent, reply in await self._to_shards(parsed):
            if isinstance(reply, BaseException):
                log.warning("shard %d failed a batch of %d: %r", index, len(sent), reply)
                failed.extend(item for item, _ in sent)
                continue
            rows.extend(reply.outbox)
            for outcome, (_, event) in zip(reply.outcomes, sent, strict=True):
                if outcome == "unknown_instance":
                    log.warning(
                        "event %s for unknown instance %s", event.event_id, event.instance_id
                    )
        await self.route(rows)
        return failed

    async def on_tasks(self, jobs: list[QueueJob]) -> None:
        """The batch goes to the next pool; jobs of a failed call or job are redelivered."""
        valid: list[QueueJob] = []
        parsed: list[TaskJobData] = []
        for job in jobs:
            try:
                parsed.append(parse_task_job(job))
            except MalformedJobError as error:
                await self.dead_letter(None, job, str(error))
                continue
            valid.append(job)
        if not valid:
            return
        index = next(self._next_pool)
        try:
            reply = await self.backend.run_tasks(index, parsed)
        except Exception as error:
            self._note(ok=False)
            log.warning("pool %d failed a batch of %d task(s): %r", index, len(valid), error)
            raise PartialBatchFailure(valid, f"pool {index} failed") from error
        self._pool_replied(index, reply)
        await self.route(reply.outbox)
        if reply.failed:
            raise PartialBatchFailure([valid[i] for i in reply.failed])

    # -- what commits wrote ---------------------------------------------------------------

    async def route(self, rows: Sequence[OutboxRow]) -> None:
        """Sends committed outbox rows on: events straight to their shard, tasks claimed
        for a pool to that pool, other jobs to the queue.

        Best effort by design: every row is committed, so whatever this cannot send
        (a shard call failed, the broker is down) the sweeper publishes later.
        """
        claimed = [r for r in rows if r.claim is not None]
        if claimed:
            await self.hand_over(claimed)
        await self._publish([r for r in rows if r.queue != ORCHESTRATOR_QUEUE and r.claim is None])
        events = [r for r in rows if r.queue == ORCHESTRATOR_QUEUE]
        if events:
            await self._deliver(events)

    # -- tasks claimed where they were created ----------------------------------------

    def _claim_for(self, shard: int) -> TaskClaim | None:
        """The pool the due tasks created by shard ``shard``'s next steps are claimed
        for (the engine then hands them over itself), or None: through the broker.

        None while that pool's lease owner is unknown (it is starting) and while
        ``task_handover_limit`` tasks handed over are still in their pools: those wait
        there holding a lease the heartbeat renews, so beyond it new tasks wait in the
        broker instead, as pending rows, with no lease.
        """
        count = self.backend.pool_count
        if not count or self.handed_over >= self.settings.task_handover_limit:
            return None
        owner = self._pool_owners[shard % count]
        if owner is None:
            return None
        s = self.settings
        return TaskClaim(owner, s.task_default_lease_ms, s.task_lease_margin_ms)

    def claim_for_start(self) -> TaskClaim | None:
        """The pool the tasks of ``runtime``'s next interactive starts are claimed for
        (``TaskHandOver``): the next pool in the broker's task batches' turn, under the
        same limit as a step's."""
        return self._claim_for(next(self._next_pool))

    async def hand_over(self, rows: Sequence[OutboxRow]) -> None:
        """Runs claimed tasks (a step's or a start's, ``TaskHandOver``) on the pools they
        were claimed for, in the background (a pool's batch returns when its handlers
        have; the events that created them must not wait that long)."""
        by_pool: dict[int, list[OutboxRow]] = {}
        stray: list[OutboxRow] = []
        for row in rows:
            assert row.claim is not None
            owner = row.claim["lease_owner"]
            if owner in self._pool_owners:
                by_pool.setdefault(self._pool_owners.index(owner), []).append(row)
            else:  # the pool restarted since the claim was asked for
                stray.append(row)
        for index, batch in by_pool.items():
            self.handed_over += len(batch)
            task = asyncio.create_task(self._run_handed_over(index, batch))
            self._handovers.add(task)
            task.add_done_callback(self._handovers.discard)
        if stray:
            await self._give_back(stray)

    async def _run_handed_over(self, index: int, rows: list[OutboxRow]) -> None:
        jobs = [
            TaskJobData(
                tenant_id=row.tenant_id,
                task_id=row.data["taskId"],
                trace=row.data.get("traceContext"),
                task_type=row.data.get("taskType"),
                claim=row.claim,
            )
            for row in rows
        ]
        reply: PoolReply | None = None
        try:
            reply = await self._run_on_pool(index, jobs)
        except Exception as error:
            log.warning("pool %d failed %d task(s) handed over: %r", index, len(jobs), error)
        finally:
            # Counted while in the pool, where their leases are renewed; not while their
            # completions go on to their shards (which can take a while in a burst).
            self.handed_over -= len(rows)
        if reply is not None:
            await self.route(reply.outbox)
        failed = list(range(len(jobs))) if reply is None else reply.failed
        if failed:
            await self._give_back([rows[i] for i in failed])

    async def _give_back(self, rows: Sequence[OutboxRow]) -> None:
        """Claimed tasks that did not run where they were claimed: their leases expire
        now (as a dead pool's), and their jobs go through the broker, where any pool
        claims them again (one more attempt counted: a handler may have run). What this
        cannot do, the sweeper does once the leases expire by themselves."""
        owners: dict[str, list[tuple[str, uuid.UUID]]] = {}
        for row in rows:
            assert row.claim is not None
            owners.setdefault(row.claim["lease_owner"], []).append((row.tenant_id, row.claim["id"]))
        for owner, keys in owners.items():
            if not await expire_claims(self.pool, keys, owner):
                return
        await self._publish(rows)

    async def _deliver(self, rows: Sequence[OutboxRow]) -> None:
        """Applies event rows on their shards (what their commits wrote is routed in
        turn) and deletes the delivered ones' rows; a row whose shard call failed stays
        unpublished, for the sweeper to publish through the broker, and a task success
        whose shard call failed is committed without its step (``_commit_successes``)."""
        parsed: list[tuple[OutboxRow, EventJobData]] = []
        for row in rows:
            if row.event is not None:  # an engine-made row carries its event
                parsed.append((row, row.event))
                continue
            try:
                parsed.append((row, parse_event_job(QueueJob(row.queue, row.job_name, row.data))))
            except MalformedJobError:  # not ours to judge here: the broker path decides
                await self._publish([row])
        failed = {row.id for row in await self._apply(parsed)}
        delivered = [row for row, _ in parsed if row.id not in failed]
        if delivered:
            self.delivered_direct += len(delivered)
            try:
                await self.publisher.forget_delivered(delivered)
            except Exception:
                log.exception("deleting %d delivered event row(s) failed", len(delivered))
        unsettled = [row for row, _ in parsed if row.id in failed and _success_of(row)]
        if unsettled:
            await self._commit_successes(unsettled)

    async def _commit_successes(self, rows: Sequence[OutboxRow]) -> None:
        """Task successes whose step failed (their shard call raised), committed without
        one (``completions.commit``): their events become stored outbox rows, published
        through the broker. If this fails too, their leases expire and the tasks run
        again, as after a crash."""
        completed = completed_of(rows)
        try:
            committed = await commit(self.pool, completed)
        except Exception:
            log.exception("committing %d task success(es) failed", len(completed))
            return
        await self._publish([row for batch in committed if batch for row in batch])

    async def _deliver_held(self, rows: list[OutboxRow]) -> list[OutboxRow]:
        """The admitter's events, straight to their shards; returns those not delivered.

        The rows are marked published already (taken by the admitter); what the shards'
        commits wrote is sent on like any other.
        """
        parsed: list[tuple[OutboxRow, EventJobData]] = []
        for row in rows:
            try:
                event = parse_event_job(QueueJob(row.queue, row.job_name, row.data))
            except MalformedJobError as error:
                await self.dead_letter(row.tenant_id, row.job(), str(error))
                continue
            parsed.append((row, dataclasses.replace(event, admitted=True)))
        return await self._apply(parsed)

    async def _run_admitted(self, index: int, jobs: list[TaskJobData]) -> list[int]:
        """The admitter's tasks, claimed for pool ``index``, on that pool; returns the
        indexes that failed."""
        reply = await self._run_on_pool(index, jobs)
        await self.route(reply.outbox)
        return reply.failed

    async def _run_on_pool(self, index: int, jobs: list[TaskJobData]) -> PoolReply:
        """Claimed tasks on pool ``index``; the reply's rows are the caller's to route."""
        try:
            reply = await self.backend.run_tasks(index, jobs)
        except Exception:
            self._note(ok=False)
            raise
        self._pool_replied(index, reply)
        return reply

    async def _to_shards(
        self, items: Sequence[tuple[_Item, EventJobData]]
    ) -> list[tuple[int, list[tuple[_Item, EventJobData]], ShardReply | BaseException]]:
        """One call per shard with its share of ``items``, all at once.

        Returns, per shard called, its index, what it was sent, and its reply or the
        error of the call.
        """
        routed: dict[int, list[tuple[_Item, EventJobData]]] = {}
        for item, event in items:
            routed.setdefault(self.shard_of(event.instance_id), []).append((item, event))
        order = list(routed)
        replies = await asyncio.gather(
            *(self.backend.apply(i, [e for _, e in routed[i]], self._claim_for(i)) for i in order),
            return_exceptions=True,
        )
        for reply in replies:
            self._note(not isinstance(reply, BaseException))
            if isinstance(reply, ShardReply) and reply.tally is not None:
                self.tally.add(reply.tally)
        return [(i, routed[i], reply) for i, reply in zip(order, replies, strict=True)]

    async def _publish(self, rows: Sequence[OutboxRow]) -> None:
        if not rows:
            return
        try:
            await self.publisher.publish(rows)
        except Exception:
            log.exception("publishing %d outbox job(s) failed; the sweeper will retry", len(rows))

    async def dead_letter(self, tenant_id: str | None, job: QueueJob, reason: str) -> None:
        """Keeps a job that can never succeed where people can see it, then lets it go."""
        async with self.pool.acquire() as connection:
            await insert_dead_letter(connection, tenant_id, job, reason)


def _success_of(row: OutboxRow) -> TaskSuccess | None:
    return None if row.event is None else row.event.success
