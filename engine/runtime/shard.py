"""An instance shard: many virtual instance actors in one process, committing together.

A virtual actor owns one instance: its checkpoint in memory (once activated) and a
mailbox of events not yet applied. Its events are applied strictly in arrival order
and one step at a time: an actor whose step is being committed is *busy*, and events
arriving meanwhile wait in its mailbox for the next commit. Other instances proceed
concurrently: each commit takes the mailboxes of every ready actor (up to
``max_batch`` events; an instance of a big machine, whose step may run long, alone) and
applies them in one transaction through
:meth:`InstanceRuntime.apply_collecting` (group commit), and up to
``commit_concurrency`` commits run at once on disjoint sets of actors.

Activation and passivation: an actor is activated from its Postgres checkpoint by the
runtime on its first message (a cache miss) and kept in memory afterwards, so its
next step skips the read. It is passivated (dropped from memory; nothing is lost,
Postgres has the step) when it has been idle ``idle_ms``, when it stops running, or
when the shard holds more than ``max_resident`` checkpoints (least recently used
first; busy actors are pinned). A version conflict (another engine wrote the
instance) drops the copy and the runtime's retry re-reads it.

The shard is plain asyncio, Ray-free: ``actors/shards.py`` hosts it in a Ray actor.
Committed outbox rows are returned to the caller, never published from here, so the
shard needs no queue client; the sweeper publishes any row the caller loses.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from statefleet.engine.ports.backend import TaskClaim
from statefleet.engine.ports.queue import EventJobData
from statefleet.engine.record import record
from statefleet.engine.runtime.checkpoints import Checkpoint, InstanceKey
from statefleet.engine.runtime.instances import ApplyOutcome, InstanceRuntime
from statefleet.engine.runtime.outbox import OutboxRow
from statefleet.engine.runtime.step_limits import StepLimits
from statefleet.engine.store.db import read_uuid

__all__ = ["InstanceShard", "ShardResult", "ShardSettings"]

log = logging.getLogger(__name__)
#: The instance of a letter whose instance id is not a UUID (it is never committed).
_NIL = uuid.UUID(int=0)


@record
class ShardSettings:
    #: Checkpoints held in memory at most (busy actors excepted); LRU beyond.
    max_resident: int = 10_000
    #: An actor idle this long is passivated.
    idle_ms: int = 60_000
    #: Events per commit at most.
    max_batch: int = 512
    #: Commits in flight at once (on disjoint instances).
    commit_concurrency: int = 2
    #: The budget of each step the shard's runtime takes.
    step: StepLimits = field(default_factory=StepLimits)


@dataclass(slots=True)
class ShardResult:
    """What :meth:`InstanceShard.submit` returns: one outcome per event, rows to publish."""

    outcomes: list[ApplyOutcome]
    outbox: list[OutboxRow]


@dataclass(eq=False, slots=True)
class _Letter:
    event: EventJobData
    done: asyncio.Future[tuple[ApplyOutcome, list[OutboxRow]]]
    #: The event's instance, read once (``submit``); a letter whose instance id is not a
    #: UUID is answered there and never committed.
    key: InstanceKey
    #: Who the due tasks its step creates are claimed for (``submit``'s ``claim``).
    claim: TaskClaim | None = None


@dataclass(eq=False, slots=True)
class _VirtualActor:
    key: InstanceKey
    mailbox: deque[_Letter] = field(default_factory=deque)
    busy: bool = False
    checkpoint: Checkpoint | None = None
    last_used: float = 0.0


class InstanceShard:
    """Hosts virtual instance actors; see the module docstring. One event loop."""

    def __init__(
        self,
        make_runtime: Callable[[InstanceShard], InstanceRuntime],
        settings: ShardSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``make_runtime`` builds the runtime with this shard as its checkpoint cache."""
        self.settings = settings or ShardSettings()
        self._clock = clock
        self._actors: dict[InstanceKey, _VirtualActor] = {}
        # Activated actors, least recently used first.
        self._resident: OrderedDict[InstanceKey, _VirtualActor] = OrderedDict()
        self._ready: OrderedDict[InstanceKey, _VirtualActor] = OrderedDict()
        self._wakeup = asyncio.Event()
        self._committers: list[asyncio.Task[None]] = []
        self.runtime = make_runtime(self)
        self.commits = 0
        self.peak_resident = 0

    # -- the CheckpointCache hook (called by the runtime) ---------------------------

    def get(self, key: InstanceKey) -> Checkpoint | None:
        actor = self._actors.get(key)
        return None if actor is None else actor.checkpoint

    def put(self, checkpoint: Checkpoint) -> None:
        actor = self._actors.get(checkpoint.key)
        if actor is None:  # passivated meanwhile: no reason to bring it back
            return
        actor.checkpoint = checkpoint
        actor.last_used = self._clock()
        self._resident[checkpoint.key] = actor
        self._resident.move_to_end(checkpoint.key)
        self._evict_over_limit()

    def drop(self, key: InstanceKey) -> None:
        actor = self._actors.get(key)
        if actor is None:
            return
        actor.checkpoint = None
        self._resident.pop(key, None)
        self._forget_if_idle(actor)

    # -- metrics ------------------------------------------------------------------

    def resident_count(self) -> int:
        """Instances whose checkpoint this shard holds in memory."""
        return len(self._resident)

    def actor_count(self) -> int:
        """Virtual actors alive: resident, or holding events not yet applied."""
        return len(self._actors)

    # -- messages -------------------------------------------------------------------

    async def submit(
        self, events: Sequence[EventJobData], claim: TaskClaim | None = None
    ) -> ShardResult:
        """Delivers events to their actors and waits until every one is committed.

        Returns one outcome per event, in order, and the outbox rows their steps
        committed (to be published by the caller). With a ``claim``, the due tasks
        those steps create are claimed for its pool (the caller runs them there).
        Raises if a commit failed (an infrastructure error); the events then may or
        may not have been applied, and delivering them again is safe (event ids).
        """
        self._ensure_committers()
        self.passivate_idle()
        loop = asyncio.get_running_loop()
        letters: list[_Letter] = []
        for event in events:
            try:
                key: InstanceKey = (event.tenant_id, read_uuid(event.instance_id))
            except ValueError:
                letter = _Letter(event, loop.create_future(), (event.tenant_id, _NIL), claim)
                letters.append(letter)
                letter.done.set_result(
                    (ApplyOutcome(event.event_id, event.instance_id, "unknown_instance"), [])
                )
                continue
            letter = _Letter(event, loop.create_future(), key, claim)
            letters.append(letter)
            actor = self._actors.get(key)
            if actor is None:
                actor = self._actors[key] = _VirtualActor(key)
            actor.mailbox.append(letter)
            if not actor.busy:
                self._ready[key] = actor
                if not event.admitted:
                    # Interactive work goes to the front of the next commit; held work
                    # the admitter handed over waits its turn behind it.
                    self._ready.move_to_end(key, last=False)
        self._wakeup.set()
        results = await asyncio.gather(*(letter.done for letter in letters))
        outbox = [row for _, rows in results for row in rows]
        return ShardResult([outcome for outcome, _ in results], outbox)

    def passivate_idle(self) -> int:
        """Drops actors idle for ``idle_ms``; returns how many."""
        horizon = self._clock() - self.settings.idle_ms / 1000
        idle: list[tuple[InstanceKey, _VirtualActor]] = []
        # LRU order: stop at the first actor used recently (no copy of the whole map:
        # this runs on every message and must not cost in proportion to residents).
        for key, actor in self._resident.items():
            if actor.last_used > horizon:
                break
            if not actor.busy and not actor.mailbox:
                idle.append((key, actor))
        for key, actor in idle:
            self._passivate(key, actor)
        return len(idle)

    async def close(self) -> None:
        """Stops the commit loops; events not yet committed fail their callers."""
        for task in self._committers:
            task.cancel()
        await asyncio.gather(*self._committers, return_exceptions=True)
        self._committers = []
        for actor in self._actors.values():
            for letter in actor.mailbox:
                if not letter.done.done():
                    letter.done.set_exception(RuntimeError("instance shard closed"))

    # -- internals ------------------------------------------------------------------

    def _ensure_committers(self) -> None:
        if self._committers:
            return
        self._committers = [
            asyncio.create_task(self._commit_loop(), name=f"shard-commit-{n}")
            for n in range(self.settings.commit_concurrency)
        ]

    def _take(self) -> tuple[list[_VirtualActor], list[_Letter]]:
        """Takes whole mailboxes of ready actors, up to ``max_batch`` events."""
        # Instances of a commit are pinned in memory while it runs: keeping their
        # number under max_resident / commit_concurrency keeps the bound strict.
        s = self.settings
        max_actors = max(1, s.max_resident // s.commit_concurrency)
        actors: list[_VirtualActor] = []
        letters: list[_Letter] = []
        while self._ready and len(letters) < s.max_batch and len(actors) < max_actors:
            key, actor = next(iter(self._ready.items()))
            alone = self._runs_long(actor)
            if letters and (alone or len(letters) + len(actor.mailbox) > s.max_batch):
                break
            del self._ready[key]
            actor.busy = True
            actors.append(actor)
            letters.extend(actor.mailbox)
            actor.mailbox.clear()
            if alone:
                break
        return actors, letters

    def _runs_long(self, actor: _VirtualActor) -> bool:
        """An instance of a big machine is committed alone: its step may take up to its
        time budget, and every instance committed with it would wait that long (and so
        would their next events, queued behind them). Known only once resident."""
        checkpoint = actor.checkpoint
        return checkpoint is not None and self.runtime.steps_in_thread(checkpoint.definition_id)

    async def _commit_loop(self) -> None:
        while True:
            if not self._ready:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            actors, letters = self._take()
            if self._ready:
                self._wakeup.set()  # let another commit loop take the rest
            try:
                await self._commit(letters)
            finally:
                for actor in actors:
                    actor.busy = False
                    actor.last_used = self._clock()
                    if actor.mailbox:
                        self._ready[actor.key] = actor
                        self._wakeup.set()
                    else:
                        self._forget_if_idle(actor)
                self._evict_over_limit()
                self.peak_resident = max(self.peak_resident, len(self._resident))

    async def _commit(self, letters: list[_Letter]) -> None:
        # The rows of an instance go to the caller of its last letter (below): so do the
        # claims of its tasks, as that caller asked for them (a shard commits the
        # events of several engines' calls together).
        claims: dict[uuid.UUID, TaskClaim] = {}
        for letter in letters:
            if letter.claim is not None:
                claims[letter.key[1]] = letter.claim
            elif claims:
                claims.pop(letter.key[1], None)
        try:
            outcomes, outbox = await self.runtime.apply_collecting(
                [x.event for x in letters], claims
            )
        except asyncio.CancelledError:
            for letter in letters:
                if not letter.done.done():
                    letter.done.set_exception(RuntimeError("instance shard closed"))
            raise
        except Exception as error:
            log.exception("commit of %d event(s) failed", len(letters))
            for letter in letters:
                self.drop(letter.key)
                if not letter.done.done():
                    letter.done.set_exception(error)
            return
        self.commits += 1
        # Attach each row to the last letter of its instance, so every row is
        # returned to exactly one caller.
        rows_of: dict[uuid.UUID | None, list[OutboxRow]] = {}
        for row in outbox:
            rows_of.setdefault(row.instance_id, []).append(row)
        last_of = {x.key[1]: i for i, x in enumerate(letters)}
        orphans = [r for k, rows in rows_of.items() if k not in last_of for r in rows]
        for index, (letter, outcome) in enumerate(zip(letters, outcomes, strict=True)):
            rows = []
            if last_of.get(letter.key[1]) == index:
                rows = rows_of.get(letter.key[1], [])
            if index == len(letters) - 1:
                rows = rows + orphans
            if not letter.done.done():
                letter.done.set_result((outcome, rows))

    def _evict_over_limit(self) -> None:
        excess = len(self._resident) - self.settings.max_resident
        if excess <= 0:
            return
        # Least recently used first, skipping pinned actors (their step is being
        # committed); only as far as needed, never a copy of the whole map: this runs
        # on every put, and a scan of every resident made 30,000 instances quadratic.
        victims: list[tuple[InstanceKey, _VirtualActor]] = []
        for key, actor in self._resident.items():
            if len(victims) == excess:
                break
            if not actor.busy:
                victims.append((key, actor))
        for key, actor in victims:
            self._passivate(key, actor)

    def _passivate(self, key: InstanceKey, actor: _VirtualActor) -> None:
        actor.checkpoint = None
        self._resident.pop(key, None)
        self._forget_if_idle(actor)

    def _forget_if_idle(self, actor: _VirtualActor) -> None:
        if actor.checkpoint is None and not actor.busy and not actor.mailbox:
            self._actors.pop(actor.key, None)
