"""The instance runtime: start instances and apply events, each step committed durably.

Every call works on a batch and commits it in one transaction (group commit):
the instances' new checkpoints (optimistic version check), one audit row per
applied event, the tasks and timers the effects created, cancellations, and
outbox jobs. Jobs are published after commit. A batch of one is the simple
case, not a different code path.

Apply-once: an event id already in an instance's audit log is acknowledged and
not applied again; two engines racing on one instance both compute a step, but
only the one whose version check passes writes it, and the other re-reads the
checkpoint and tries again (finding the event applied, or applying it on top).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal, Protocol

from statefleet.engine import tracing
from statefleet.engine.handlers.builtin import MANUAL_TYPES
from statefleet.engine.interpreter import Machine, Snapshot, Step
from statefleet.engine.ports.backend import TaskClaim
from statefleet.engine.ports.queue import (
    ORCHESTRATOR_QUEUE,
    EventJobData,
    TaskSuccess,
    event_job,
)
from statefleet.engine.record import record
from statefleet.engine.runtime.audit import insert_events
from statefleet.engine.runtime.checkpoints import Checkpoint, CheckpointCache, InstanceKey
from statefleet.engine.runtime.completions import late_events, record_late, settle
from statefleet.engine.runtime.machines import MachineCache
from statefleet.engine.runtime.observe import Observer
from statefleet.engine.runtime.outbox import (
    OutboxRow,
    OutboxSink,
    continue_traces,
    insert_outbox,
    task_attempt_row,
)
from statefleet.engine.runtime.plan import (
    AuditRow,
    InstancePlan,
    TaskRow,
    instance_status,
    plan_effects,
)
from statefleet.engine.runtime.priority import INTERACTIVE
from statefleet.engine.runtime.step_limits import StepLimits
from statefleet.engine.runtime.upgrades import UPGRADE_EVENT, Moves, load_moves, move_instance
from statefleet.engine.store.db import (
    Connection,
    Pool,
    json_text,
    new_uuid,
    read_uuid,
)
from statefleet.engine.store.queries import load_queries

__all__ = [
    "START_EVENT",
    "ApplyOutcome",
    "InstanceRuntime",
    "StartRequest",
    "StartResult",
    "event_outbox_row",
    "held_start_row",
]

log = logging.getLogger(__name__)

SQL = {
    **load_queries("instances.sql"),
    **load_queries("tasks.sql"),
    **load_queries("upgrades.sql"),
}

#: Machines with at least this many state nodes take their steps in a worker thread, so
#: the event loop, and with it every other instance of the shard, keeps going while one
#: long step runs (up to its time budget); a smaller machine's step is cheaper than the
#: hop to a thread and back, so it runs inline.
THREAD_MIN_STATES = 64

#: The event a started instance receives first (docs/spec.md, "The root").
START_EVENT = "WORKFLOW_START"
INIT_EVENT_ID = "xstate.init"

#: ``late``: a cancelled task's completion (recorded, not applied); ``superseded``: the
#: events of a task attempt that lost its lease (dropped); ``requeued``: those of a
#: success settled by a step that lost its version check (applied from the outbox).
Outcome = Literal[
    "applied",
    "duplicate",
    "unknown_instance",
    "not_running",
    "late",
    "superseded",
    "requeued",
]
#: Where committed outbox rows go: published now, or collected for the caller to publish.
_Sink = Callable[[Sequence[OutboxRow]], Awaitable[None]]


@record
class ApplyOutcome:
    event_id: str
    instance_id: str
    outcome: Outcome
    handled: bool = False


@record
class StartRequest:
    input: Mapping[str, Any] | None = None
    idempotency_key: str | None = None


@record
class StartResult:
    instance_id: uuid.UUID
    created: bool
    status: str


def event_outbox_row(
    tenant_id: str,
    instance_id: uuid.UUID,
    event_id: str,
    event_type: str,
    payload: Mapping[str, Any] | None = None,
    *,
    priority: int = INTERACTIVE,
    stored: bool = True,
    success: TaskSuccess | None = None,
    trace: Mapping[str, str] | None = None,
) -> OutboxRow:
    """An event's outbox row; below the interactive priority it is held for the admitter.

    ``stored=False``: the job of an event whose durable record is another row (see
    ``OutboxRow.stored``), or none yet (``success``: the task attempt whose result the
    event is, committed by the step that applies it: ``completions.py``). ``trace``:
    the trace the event continues (default: the current span's, if any).
    """
    job = event_job(
        tenant_id=tenant_id,
        instance_id=str(instance_id),
        event_id=event_id,
        event_type=event_type,
        payload=payload,
        # The span this event is sent under (an API request, a task attempt), if any.
        trace=trace if trace is not None else tracing.carrier(),
    )
    assert job.dedupe_key is not None
    data = job.data
    return OutboxRow(
        tenant_id=tenant_id,
        id=new_uuid(),
        instance_id=instance_id,
        queue=ORCHESTRATOR_QUEUE,
        job_name=job.name,
        data=job.data,
        dedupe_key=job.dedupe_key,
        held=priority < INTERACTIVE,
        priority=priority,
        stored=stored,
        # What parse_event_job would read back from data (event_job checked the parts).
        event=EventJobData(
            tenant_id=tenant_id,
            instance_id=data["instanceId"],
            event_id=event_id,
            event_type=event_type,
            payload=data["event"]["payload"],
            trace=data.get("traceContext"),
            success=success,
        ),
    )


def start_event_id(instance_id: uuid.UUID) -> str:
    """The id of an instance's start event: fixed, so a start sent twice applies once."""
    return f"start-{instance_id}"


def held_start_row(
    tenant_id: str, instance_id: uuid.UUID, start_event: str, priority: int
) -> OutboxRow:
    """The outbox row of a start below the interactive priority: held for the admitter,
    like every held event, and applied by the instance's shard once handed over. An
    interactive start has no row: ``start_many`` applies it as it creates the instance.
    """
    return event_outbox_row(
        tenant_id, instance_id, start_event_id(instance_id), start_event, priority=priority
    )


#: Statuses no event can change any more. An event that reaches such an instance (a task's
#: completion arriving after the event its handler emitted finished the instance, a send
#: that raced the end) is still written to the audit log, unhandled, so that what it
#: carried (an AI task's decision record) is never lost. A failed instance is left out:
#: retrying the task that failed it reopens it only while that failure is its last row.
FINISHED_FOR_GOOD = frozenset({"done", "cancelled"})


def _audit_late(plan: InstancePlan, seq: int, event: EventJobData, value: Any) -> None:
    """Records an event that arrived after its instance finished: no step, no effects."""
    plan.audit.append(
        AuditRow(
            tenant_id=plan.tenant_id,
            instance_id=plan.instance_id,
            seq=seq,
            event_id=event.event_id,
            type=event.event_type,
            payload=event.payload or {},
            state_before=value,
            state_after=value,
            effects=[],
            handled=False,
            error=None,
        )
    )


def _claim(task: TaskRow, owner: str) -> dict[str, Any]:
    """A task inserted claimed, as ``claim_admitted`` returns a claimed row (with the
    lease owner the executor checks): what its pool runs the first attempt from."""
    return {
        "tenant_id": task.tenant_id,
        "id": task.id,
        "instance_id": task.instance_id,
        "kind": task.kind,
        "type": task.type,
        "name": task.name,
        "input": task.input,
        "attempts": 1,
        "max_attempts": task.max_attempts,
        "backoff": task.backoff,
        "timeout_ms": task.timeout_ms,
        "policy": task.policy,
        "idempotency_key": task.idempotency_key,
        "completion_event": task.completion_event,
        "failure_event": task.failure_event,
        "lease_owner": owner,
    }


def _audit(
    plan: InstancePlan,
    seq: int,
    event_id: str,
    event: Mapping[str, Any],
    before: Any,
    step: Step,
) -> None:
    plan.audit.append(
        AuditRow(
            tenant_id=plan.tenant_id,
            instance_id=plan.instance_id,
            seq=seq,
            event_id=event_id,
            type=event["type"],
            payload=event.get("payload") or {},
            state_before=before,
            state_after=step.snapshot.value,
            effects=step.effects_as_dicts(),
            handled=step.handled,
            error=step.error,
        )
    )


async def _settle(
    connection: Connection,
    groups: dict[InstanceKey, list[tuple[int, EventJobData]]],
    outcomes: dict[int, ApplyOutcome],
) -> tuple[set[uuid.UUID], list[EventJobData]]:
    """Commits the task successes the batch's events carry (``completions.py``), in the
    step's transaction, before anything is planned; returns the tasks settled and the
    completions to record as late.

    Only the events of a success that settles stay in ``groups``: those of an attempt
    that lost its lease are dropped (``superseded``), and a cancelled task's completion
    is recorded after the steps (``late``), not applied.
    """
    carried: dict[uuid.UUID, tuple[str, TaskSuccess, list[EventJobData]]] = {}
    for key, group in groups.items():
        for _, ev in group:
            if ev.success is not None:
                entry = carried.setdefault(ev.success.task_id, (key[0], ev.success, []))
                entry[2].append(ev)
    if not carried:
        return set(), []
    settled, cancelled = await settle(connection, [(t, s) for t, s, _ in carried.values()])
    if len(settled) == len(carried):
        return settled, []
    for key, group in list(groups.items()):
        kept = []
        for index, ev in group:
            if ev.success is None or ev.success.task_id in settled:
                kept.append((index, ev))
                continue
            outcome: Outcome = "late" if ev.success.task_id in cancelled else "superseded"
            outcomes[index] = ApplyOutcome(ev.event_id, ev.instance_id, outcome)
        if kept:
            groups[key] = kept
        else:
            del groups[key]
    return settled, late_events([(s, evs) for _, s, evs in carried.values()], cancelled)


def _requeued(instance_id: uuid.UUID, event: EventJobData) -> OutboxRow:
    """The outbox row of a settled success's event that a step could not apply."""
    return event_outbox_row(
        event.tenant_id,
        instance_id,
        event.event_id,
        event.event_type,
        event.payload,
        trace=event.trace or {},
    )


class TaskHandOver(Protocol):
    """An engine in this process (``Engine``) that runs the due tasks interactive starts
    create on its own pools, as it runs those its shards' steps create: claimed for a
    pool in the creating transaction and handed to it after the commit, with no broker
    job and no claim statement (docs/architecture.md, "Tasks claimed where they are
    created")."""

    def claim_for_start(self) -> TaskClaim | None:
        """The pool the next start's due tasks are claimed for; None: the broker."""
        ...

    async def hand_over(self, rows: Sequence[OutboxRow]) -> None:
        """Runs the committed, claimed task rows on the pools they were claimed for."""
        ...


class InstanceRuntime:
    """Starts instances and applies events; safe to share within one event loop.

    ``checkpoints`` (optional) is asked for an instance's checkpoint before Postgres
    is; committed steps of running instances are put back into it, and instances
    that finished or lost a version check are dropped from it (see
    :mod:`statefleet.engine.runtime.checkpoints`). Without it, every step reads
    its checkpoint. ``tasks_here`` (optional): the engine of this process, which runs
    the tasks its interactive starts create (:class:`TaskHandOver`); without it, their
    jobs go through the broker.
    """

    def __init__(
        self,
        pool: Pool,
        publisher: OutboxSink,
        machines: MachineCache | None = None,
        *,
        max_conflict_retries: int = 20,
        checkpoints: CheckpointCache | None = None,
        observer: Observer | None = None,
        step_limits: StepLimits | None = None,
        tasks_here: TaskHandOver | None = None,
    ) -> None:
        self.observer = observer
        self.tasks_here = tasks_here
        #: The budget of every step (``step_limits.py``): a step over it fails its instance.
        self.step_limits = step_limits or StepLimits()
        self.pool = pool
        self.publisher = publisher
        self.machines = machines or MachineCache()
        self.max_conflict_retries = max_conflict_retries
        self.checkpoints = checkpoints

    # -- steps ------------------------------------------------------------------

    def steps_in_thread(self, definition_id: uuid.UUID) -> bool:
        """Whether this definition's steps may run long (its machine is big, and known).

        The shard commits such an instance's events on their own, so that its long
        step delays no other instance's commit (``InstanceShard._take``).
        """
        machine = self.machines.peek(definition_id)
        return machine is not None and len(machine.nodes) >= THREAD_MIN_STATES

    async def _initial_state(self, machine: Machine, input: Mapping[str, Any] | None) -> Step:
        if len(machine.nodes) < THREAD_MIN_STATES:
            return machine.initial_state(input, self.step_limits.budget())
        budget = self.step_limits.budget(in_thread=True)
        return await asyncio.to_thread(machine.initial_state, input, budget)

    async def _transition(
        self, machine: Machine, snapshot: Snapshot, event: Mapping[str, Any]
    ) -> Step:
        """One step under the budget; a big machine's in a thread (``THREAD_MIN_STATES``)."""
        if len(machine.nodes) < THREAD_MIN_STATES:
            step = machine.transition(snapshot, event, self.step_limits.budget())
        else:
            budget = self.step_limits.budget(in_thread=True)
            step = await asyncio.to_thread(machine.transition, snapshot, event, budget)
        if step.error is not None and step.error.startswith("step budget exceeded"):
            log.warning("instance step failed: %s", step.error)
        return step

    # -- start ------------------------------------------------------------------

    async def start_many(
        self,
        tenant_id: str,
        definition_id: uuid.UUID,
        requests: Sequence[StartRequest],
        *,
        start_event: str | None = START_EVENT,
        batch_id: uuid.UUID | None = None,
        priority: int = INTERACTIVE,
    ) -> list[StartResult]:
        """Creates instances (one transaction for the batch) and starts them.

        An interactive start (``priority`` ``INTERACTIVE``) applies the start event in
        the creating transaction itself: each row is inserted at the checkpoint its
        start step leaves, with both audit rows (the entry, then ``start_event``) and
        the tasks the two steps create. No instance exists before its start, so no
        other writer can come between, and the step is the one the instance's shard
        would have made: the same audit row, event id and effects. That spares every
        start a broker job, a shard's delivery and a checkpoint update (the peers call
        this an eager start). Below ``INTERACTIVE``, the start events and the
        instances' tasks are held for the admitter (``admission.py``) instead, and a
        shard applies the start when the admitter hands it over.

        A request whose idempotency key the tenant already used returns that
        instance (``created=False``) and writes nothing. ``batch_id`` (a row of
        ``batches``) is recorded on every new instance, so the batch's progress
        can be counted; it adds no statement.
        """
        eager_start = start_event if priority >= INTERACTIVE else None
        # The tasks the starts create run on this process's engine, if it has pools free,
        # as those a shard's step creates do (claimed in this transaction, no broker job).
        claim = (
            self.tasks_here.claim_for_start()
            if self.tasks_here is not None and eager_start is not None
            else None
        )
        # The start steps are traced as a shard's would be: under the caller's span (the
        # API request), and the tasks they create continue the trace in their pool.
        span = tracing.start_span(
            f"statefleet.step {eager_start}",
            tracing.carrier() if eager_start is not None else None,
            {"statefleet.tenant_id": tenant_id},
        )
        traced = span.is_recording()
        try:
            plans, created, existing, outbox = await self._create(
                tenant_id,
                definition_id,
                requests,
                start_event,
                eager_start,
                batch_id,
                priority,
                claim,
            )
            if traced and len(created) == 1:  # as a shard's step span names its instance
                span.set_attribute("statefleet.instance_id", str(next(iter(created))))
        finally:
            span.end()
        if traced:
            continue_traces(dict.fromkeys(map(str, created), span), outbox)
        if self.checkpoints is not None:  # their next event will find them here
            for plan in plans:
                if plan.instance_id in created and plan.status == "running":
                    self.checkpoints.put(
                        Checkpoint(
                            tenant_id=tenant_id,
                            instance_id=plan.instance_id,
                            definition_id=definition_id,
                            status=plan.status,
                            snapshot=plan.snapshot,
                            version=0,
                            last_seq=plan.audit[-1].seq,
                        )
                    )
        claimed = [row for row in outbox if row.claim is not None]
        if claimed:
            assert self.tasks_here is not None
            try:
                await self.tasks_here.hand_over(claimed)
            except Exception:  # committed: their leases expire, the sweeper re-sends them
                log.exception("handing over %d started task(s) failed", len(claimed))
        await self.publish([row for row in outbox if not row.held and row.claim is None])
        results = []
        for plan, key in zip(plans, (r.idempotency_key for r in requests), strict=True):
            if plan.instance_id in created:
                results.append(StartResult(plan.instance_id, True, plan.status))
            else:
                assert key is not None, "an instance without a start key always inserts"
                results.append(StartResult(existing[key], False, "existing"))
        return results

    async def _create(
        self,
        tenant_id: str,
        definition_id: uuid.UUID,
        requests: Sequence[StartRequest],
        start_event: str | None,
        eager_start: str | None,
        batch_id: uuid.UUID | None,
        priority: int,
        claim: TaskClaim | None,
    ) -> tuple[list[InstancePlan], set[uuid.UUID], dict[str, uuid.UUID], list[OutboxRow]]:
        """``start_many``'s steps and its transaction: the plans, the ids created, the
        instances found by start key, the rows to send on."""
        async with self.pool.acquire() as connection:
            machine = await self.machines.get(connection, tenant_id, definition_id)
            plans: list[InstancePlan] = []
            inputs: list[Any] = []
            for request in requests:
                step = await self._initial_state(machine, request.input)
                instance_id = new_uuid()
                plan = InstancePlan(
                    tenant_id=tenant_id,
                    instance_id=instance_id,
                    version=0,
                    snapshot={},
                    status="running",
                    output=None,
                    error=None,
                )
                _audit(
                    plan,
                    0,
                    INIT_EVENT_ID,
                    {"type": INIT_EVENT_ID, "payload": dict(request.input or {})},
                    None,
                    step,
                )
                plan_effects(tenant_id, instance_id, step, plan, 0)
                if eager_start is not None and step.snapshot.status == "active":
                    event = {"type": eager_start, "payload": {}}
                    before = step.snapshot.value
                    step = await self._transition(machine, step.snapshot, event)
                    _audit(plan, 1, start_event_id(instance_id), event, before, step)
                    plan_effects(tenant_id, instance_id, step, plan, 1)
                plan.snapshot = step.snapshot.as_dict()
                plan.status = instance_status(step)
                plan.output = step.output
                plan.error = step.error
                plans.append(plan)
                inputs.append(dict(request.input or {}))
            keys = [r.idempotency_key for r in requests]
            async with connection.transaction():
                inserted = await connection.fetch(
                    SQL["insert_instances"],
                    [
                        (
                            tenant_id,
                            p.instance_id,
                            definition_id,
                            p.status,
                            json_text(p.snapshot),
                            json_text(i),
                            json_text(p.output),
                            p.error,
                            k,
                        )
                        for p, i, k in zip(plans, inputs, keys, strict=True)
                    ],
                    batch_id,
                    priority,
                )
                created = {r["id"] for r in inserted}
                existing: dict[str, uuid.UUID] = {}
                wanted = [
                    k for p, k in zip(plans, keys, strict=True) if p.instance_id not in created
                ]
                if wanted:
                    for record in await connection.fetch(
                        SQL["find_instances_by_start_key"], tenant_id, [k for k in wanted if k]
                    ):
                        existing[record["start_idempotency_key"]] = record["id"]
                winners = [p for p in plans if p.instance_id in created]
                outbox = await self._write(
                    connection, winners, {p.instance_id: claim for p in winners} if claim else None
                )
                if start_event is not None and eager_start is None:
                    outbox += await insert_outbox(
                        connection,
                        [
                            held_start_row(tenant_id, p.instance_id, start_event, priority)
                            for p in winners
                            if p.status == "running"
                        ],
                    )
        return plans, created, existing, outbox

    # -- events -------------------------------------------------------------------

    async def apply(self, events: Sequence[EventJobData]) -> list[ApplyOutcome]:
        """Applies events (in order per instance) and commits them as one batch.

        Returns one outcome per event. Raises only on infrastructure errors
        (the caller's queue then redelivers the whole batch, which is safe).
        """
        started = time.perf_counter()
        outcomes = await self._apply(events, self.publish)
        if self.observer is not None:
            self.observer.events_applied(outcomes, time.perf_counter() - started)
        return outcomes

    async def apply_collecting(
        self,
        events: Sequence[EventJobData],
        claims: Mapping[uuid.UUID, TaskClaim] | None = None,
    ) -> tuple[list[ApplyOutcome], list[OutboxRow]]:
        """Like :meth:`apply`, but returns the committed outbox rows instead of publishing.

        For a caller that cannot reach the queue (a Ray actor in another process):
        it hands the rows to whoever can, which publishes them with
        :meth:`Publisher.publish`. The rows are committed before this returns, so
        if they are never published the sweeper publishes them.

        ``claims``: by instance id, the pool a due task its step creates is claimed for
        (the caller hands the job to that pool itself: ``OutboxRow.claim``).
        """
        rows: list[OutboxRow] = []

        async def collect(committed: Sequence[OutboxRow]) -> None:
            rows.extend(committed)

        started = time.perf_counter()
        outcomes = await self._apply(events, collect, claims)
        if self.observer is not None:
            self.observer.events_applied(outcomes, time.perf_counter() - started)
        return outcomes, rows

    async def _apply(
        self,
        events: Sequence[EventJobData],
        sink: _Sink,
        claims: Mapping[uuid.UUID, TaskClaim] | None = None,
    ) -> list[ApplyOutcome]:
        outcomes: dict[int, ApplyOutcome] = {}
        pending = list(enumerate(events))
        for attempt in range(self.max_conflict_retries + 1):
            if not pending:
                break
            if attempt:
                # Two writers retrying in lockstep would keep colliding: back off, with jitter.
                await asyncio.sleep(random.uniform(0, min(0.1, 0.002 * 2**attempt)))
            pending = await self._apply_once(pending, outcomes, sink, claims)
        if pending:
            raise RuntimeError(
                f"{len(pending)} event(s) lost the optimistic version check "
                f"{self.max_conflict_retries + 1} times in a row"
            )
        return [outcomes[i] for i in range(len(events))]

    async def _apply_once(
        self,
        pending: list[tuple[int, EventJobData]],
        outcomes: dict[int, ApplyOutcome],
        sink: _Sink,
        claims: Mapping[uuid.UUID, TaskClaim] | None,
    ) -> list[tuple[int, EventJobData]]:
        groups: dict[tuple[str, uuid.UUID], list[tuple[int, EventJobData]]] = {}
        for index, event in pending:
            try:
                instance_id = read_uuid(event.instance_id)
            except ValueError:
                outcomes[index] = ApplyOutcome(
                    event.event_id, event.instance_id, "unknown_instance"
                )
                continue
            groups.setdefault((event.tenant_id, instance_id), []).append((index, event))
        if not groups:
            return []
        rows: dict[InstanceKey, Checkpoint] = {}
        if self.checkpoints is not None:
            for key in groups:
                cached = self.checkpoints.get(key)
                if cached is not None:
                    rows[key] = cached
        missing = [key for key in groups if key not in rows]
        loaded: list[Checkpoint] = []
        retry: list[tuple[int, EventJobData]] = []
        winners: list[InstancePlan] = []
        losers: list[InstancePlan] = []
        outbox: list[OutboxRow] = []
        touched: set[InstanceKey] = set()
        async with self.pool.acquire() as connection, connection.transaction():
            if missing:
                loaded = [
                    Checkpoint.from_record(r)
                    for r in await connection.fetch(
                        SQL["load_instances"], [t for t, _ in missing], [i for _, i in missing]
                    )
                ]
                rows.update((c.key, c) for c in loaded)
            settled, late = await _settle(connection, groups, outcomes)
            flat = [(t, i, ev.event_id) for (t, i), evs in groups.items() for _, ev in evs]
            seen = {
                (r["instance_id"], r["event_id"])
                for r in await connection.fetch(
                    SQL["applied_event_ids"],
                    [f[0] for f in flat],
                    [f[1] for f in flat],
                    [f[2] for f in flat],
                )
            }
            plans: list[tuple[InstancePlan, list[tuple[int, EventJobData]]]] = []
            moves = await self._load_moves(connection, groups, seen)
            for (tenant_id, instance_id), group in groups.items():
                row = rows.get((tenant_id, instance_id))
                if row is None:
                    for index, ev in group:
                        outcomes[index] = ApplyOutcome(
                            ev.event_id, ev.instance_id, "unknown_instance"
                        )
                    continue
                plan = await self._plan_events(connection, row, group, seen, outcomes, moves)
                if plan is not None:
                    plans.append((plan, group))
            if plans:
                outbox = await self._commit_plans(
                    connection, plans, outcomes, retry, winners, losers, settled, claims
                )
            if late:
                touched = await record_late(connection, late)
        self._remember(loaded, winners, losers)
        if self.checkpoints is not None:
            for key in touched:
                self.checkpoints.drop(key)
        await sink(outbox)
        if retry:
            log.info("optimistic version check lost for %d event(s); retrying", len(retry))
        return retry

    async def _commit_plans(
        self,
        connection: Connection,
        plans: list[tuple[InstancePlan, list[tuple[int, EventJobData]]]],
        outcomes: dict[int, ApplyOutcome],
        retry: list[tuple[int, EventJobData]],
        winners: list[InstancePlan],
        losers: list[InstancePlan],
        settled: set[uuid.UUID],
        claims: Mapping[uuid.UUID, TaskClaim] | None,
    ) -> list[OutboxRow]:
        """Writes the plans whose version check passes (``winners``); the events of the
        others (``losers``) go to ``retry``, except those of a task success this
        transaction settled: those go to the outbox (``requeued``), which keeps them
        once the success is committed. Returns the rows to send on."""
        steps = [p for p, _ in plans if not p.records_only]
        records = [p for p, _ in plans if p.records_only]
        won: set[uuid.UUID] = set()
        if steps:
            won.update(
                r["id"]
                for r in await connection.fetch(
                    SQL["update_instances"],
                    [
                        (
                            p.tenant_id,
                            p.instance_id,
                            p.version,
                            json_text(p.snapshot),
                            p.status,
                            json_text(p.output),
                            p.error,
                            p.definition_id,
                        )
                        for p in steps
                    ],
                )
            )
        if records:
            won.update(
                r["id"]
                for r in await connection.fetch(
                    SQL["touch_instances"],
                    [p.tenant_id for p in records],
                    [p.instance_id for p in records],
                    [p.version for p in records],
                )
            )
        requeued: list[OutboxRow] = []
        for plan, group in plans:
            if plan.instance_id in won:
                winners.append(plan)
                continue
            losers.append(plan)
            for index, ev in group:
                if ev.success is not None and ev.success.task_id in settled:
                    outcomes[index] = ApplyOutcome(ev.event_id, ev.instance_id, "requeued")
                    requeued.append(_requeued(plan.instance_id, ev))
                else:
                    outcomes.pop(index, None)
                    retry.append((index, ev))
        outbox = await self._write(connection, winners, claims)
        if requeued:
            outbox += await insert_outbox(connection, requeued)
        return outbox

    def _remember(
        self,
        loaded: Sequence[Checkpoint],
        winners: Sequence[InstancePlan],
        losers: Sequence[InstancePlan],
    ) -> None:
        """After a commit: cache what is now known to be current, drop what is not.

        Only running instances are kept: a finished one may be resumed by another
        writer, and its next event must then see Postgres, not an old "finished".
        """
        cache = self.checkpoints
        if cache is None:
            return
        for checkpoint in loaded:
            if checkpoint.status == "running":
                cache.put(checkpoint)
            else:
                cache.drop(checkpoint.key)
        for plan in losers:
            cache.drop((plan.tenant_id, plan.instance_id))
        for plan in winners:
            key = (plan.tenant_id, plan.instance_id)
            previous = cache.get(key)
            if plan.status != "running" or previous is None:
                cache.drop(key)
                continue
            cache.put(
                Checkpoint(
                    tenant_id=plan.tenant_id,
                    instance_id=plan.instance_id,
                    definition_id=plan.definition_id or previous.definition_id,
                    status=plan.status,
                    snapshot=plan.snapshot,
                    version=plan.version + 1,  # update_instances bumps it
                    last_seq=plan.audit[-1].seq if plan.audit else previous.last_seq,
                )
            )

    async def _plan_events(
        self,
        connection: Connection,
        row: Checkpoint,
        group: list[tuple[int, EventJobData]],
        seen: set[tuple[uuid.UUID, str]],
        outcomes: dict[int, ApplyOutcome],
        moves: Moves | None = None,
    ) -> InstancePlan | None:
        tenant_id = row.tenant_id
        instance_id = row.instance_id
        if row.status != "running":
            return self._plan_late(row, group, seen, outcomes)
        machine = await self.machines.get(connection, tenant_id, row.definition_id)
        snapshot = Snapshot.from_dict(row.snapshot)
        seq = row.last_seq if row.last_seq is not None else -1
        plan = InstancePlan(
            tenant_id=tenant_id,
            instance_id=instance_id,
            version=row.version,
            snapshot=row.snapshot,
            status="running",
            output=None,
            error=None,
        )
        applied_any = False
        for index, ev in group:
            key = (instance_id, ev.event_id)
            if key in seen:
                outcomes[index] = ApplyOutcome(ev.event_id, ev.instance_id, "duplicate")
                continue
            if snapshot.status != "active":
                outcomes[index] = ApplyOutcome(ev.event_id, ev.instance_id, "not_running")
                if plan.status in FINISHED_FOR_GOOD:
                    seen.add(key)
                    seq += 1
                    _audit_late(plan, seq, ev, snapshot.value)
                continue
            seen.add(key)
            if ev.event_type == UPGRADE_EVENT:  # a move to another version (upgrades.py)
                seq += 1
                machine, snapshot, moved = await move_instance(
                    connection,
                    self.machines,
                    plan,
                    plan.definition_id or row.definition_id,
                    machine,
                    snapshot,
                    seq,
                    ev,
                    moves or Moves(),
                )
                applied_any = True
                outcomes[index] = ApplyOutcome(ev.event_id, ev.instance_id, "applied", moved)
                continue
            event = {"type": ev.event_type, "payload": ev.payload}
            step = await self._transition(machine, snapshot, event)
            seq += 1
            _audit(plan, seq, ev.event_id, event, snapshot.value, step)
            plan_effects(tenant_id, instance_id, step, plan, seq)
            snapshot = step.snapshot
            plan.status = instance_status(step)
            plan.output = step.output
            plan.error = step.error
            applied_any = True
            outcomes[index] = ApplyOutcome(ev.event_id, ev.instance_id, "applied", step.handled)
        if not applied_any:
            return None
        plan.snapshot = snapshot.as_dict()
        return plan

    @staticmethod
    async def _load_moves(
        connection: Connection,
        groups: Mapping[InstanceKey, list[tuple[int, EventJobData]]],
        seen: set[tuple[uuid.UUID, str]],
    ) -> Moves | None:
        """What the batch's moves to other versions need, in bulk (none: no statement)."""
        wanted = [
            (t, i, ev)
            for (t, i), group in groups.items()
            for _, ev in group
            if ev.event_type == UPGRADE_EVENT and (i, ev.event_id) not in seen
        ]
        return await load_moves(connection, wanted) if wanted else None

    @staticmethod
    def _plan_late(
        row: Checkpoint,
        group: list[tuple[int, EventJobData]],
        seen: set[tuple[uuid.UUID, str]],
        outcomes: dict[int, ApplyOutcome],
    ) -> InstancePlan | None:
        """Events for an instance that no longer runs: recorded if it finished for good."""
        plan = InstancePlan(
            tenant_id=row.tenant_id,
            instance_id=row.instance_id,
            version=row.version,
            snapshot=row.snapshot,
            status=row.status,
            output=None,
            error=None,
            records_only=True,
        )
        seq = row.last_seq if row.last_seq is not None else -1
        value = row.snapshot.get("value")
        for index, ev in group:
            key = (row.instance_id, ev.event_id)
            if key in seen:
                outcomes[index] = ApplyOutcome(ev.event_id, ev.instance_id, "duplicate")
                continue
            outcomes[index] = ApplyOutcome(ev.event_id, ev.instance_id, "not_running")
            if row.status in FINISHED_FOR_GOOD:
                seen.add(key)
                seq += 1
                _audit_late(plan, seq, ev, value)
        return plan if plan.audit else None

    # -- writing ------------------------------------------------------------------

    async def _write(
        self,
        connection: Connection,
        plans: Sequence[InstancePlan],
        claims: Mapping[uuid.UUID, TaskClaim] | None = None,
    ) -> list[OutboxRow]:
        """Writes the audit rows, cancellations, tasks and their outbox jobs of ``plans``;
        a due task is claimed for the pool ``claims`` names for its instance, if any."""
        audit = [a for p in plans for a in p.audit]
        if audit:
            await insert_events(connection, audit)
        cancellations = [c for p in plans for c in p.cancellations]
        if cancellations:
            await connection.execute(
                SQL["cancel_tasks"],
                [c.tenant_id for c in cancellations],
                [c.instance_id for c in cancellations],
                [c.kind for c in cancellations],
                [c.idempotency_key for c in cancellations],
                [c.name for c in cancellations],
            )
        marks = [(p, *m) for p in plans for m in p.upgrade_marks]
        if marks:
            await connection.execute(
                SQL["mark_items"],
                [p.tenant_id for p, *_ in marks],
                [upgrade for _, upgrade, _, _ in marks],
                [p.instance_id for p, *_ in marks],
                [outcome for _, _, outcome, _ in marks],
                [verdict for _, _, _, verdict in marks],
            )
        finished = [p for p in plans if p.status != "running" and not p.records_only]
        if finished:
            await connection.execute(
                SQL["cancel_open_tasks_of_instances"],
                [p.tenant_id for p in finished],
                [p.instance_id for p in finished],
            )
        tasks = [t for p in plans if p.status == "running" for t in p.tasks]
        return await self._insert_tasks(connection, tasks, claims or {})

    async def _insert_tasks(
        self,
        connection: Connection,
        tasks: Sequence[TaskRow],
        claims: Mapping[uuid.UUID, TaskClaim],
    ) -> list[OutboxRow]:
        if not tasks:
            return []
        owner_of = {t.id: c.owner for t in tasks if (c := claims.get(t.instance_id))}
        # One engine's lease settings: every claim of a commit comes from the same loop.
        lease = next(iter(claims.values()), None)
        inserted = await connection.fetch(
            SQL["insert_tasks"],
            [
                (
                    t.tenant_id,
                    t.id,
                    t.instance_id,
                    t.kind,
                    t.type,
                    t.name,
                    json_text(t.input),
                    t.run_at,
                    t.delay_ms,
                    t.max_attempts,
                    json_text(t.backoff),
                    t.timeout_ms,
                    json_text(t.policy),
                    t.idempotency_key,
                    t.completion_event,
                    t.failure_event,
                    t.limit_key,
                    t.limit_concurrency,
                    t.limit_per_second,
                    owner_of.get(t.id),
                )
                for t in tasks
            ],
            sorted(MANUAL_TYPES),
            lease.lease_ms if lease else 0,
            lease.margin_ms if lease else 0,
        )
        # A held task gets no job: the admitter hands it to a pool (admission.py).
        timing = {r["id"]: r for r in inserted if not r["held"]}
        rows = []  # jobs only, never outbox rows: see task_attempt_row
        for task in tasks:
            record = timing.get(task.id)
            if record is None or not task.runs_by_itself:
                continue
            rows.append(
                task_attempt_row(
                    task.tenant_id,
                    task.id,
                    1,
                    instance_id=task.instance_id,
                    run_at=record["run_at"],
                    db_now=record["db_now"],
                    task_type=task.type if task.kind == "task" else None,
                    claim=_claim(task, owner_of[task.id]) if record["claimed"] else None,
                )
            )
        return rows

    async def publish(self, rows: Sequence[OutboxRow]) -> None:
        """Publishes committed outbox rows; a failure is logged, never raised."""
        try:
            await self.publisher.publish(rows)
        except Exception:  # the sweeper publishes what is left; the step is committed
            log.exception("publishing %d outbox job(s) failed; the sweeper will retry", len(rows))
