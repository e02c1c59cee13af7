"""The backend port: where the engine's shards and executor pools live.

The engine loop (``engine/runtime/engine.py``) consumes the queues, routes each event
to the shard that owns its instance and each task batch to a pool, and publishes or
delivers what their commits wrote. Where shards and pools run is the backend's
business: in this process (``engine/runtime/local.py``) or in Ray actors
(``actors/backend.py``). Both host the same plain classes
(:class:`~statefleet.engine.runtime.shard.InstanceShard`,
:class:`~statefleet.engine.runtime.executor.TaskExecutor`), so the loop above them is
one and the same.

Obligations of an implementation:

- ``apply(shard, events, claim)`` commits the events on shard ``shard`` before it
  returns, and returns one outcome per event (in order) and the outbox rows the commits
  wrote, unpublished; with a ``claim``, the due tasks those commits create are claimed
  for its pool (their rows carry ``claim``, and the caller runs them there). It raises
  only on infrastructure errors (the caller then treats every event of the call as not
  applied; applying them again is safe: event ids).
- ``run_tasks(pool, jobs)`` runs one attempt of each job's task and never raises for a
  single job: jobs that hit an infrastructure error are listed in ``failed``.
- Both may be called concurrently, for any shard or pool, from one event loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from statefleet.engine.ports.queue import EventJobData, TaskJobData
from statefleet.engine.record import record

if TYPE_CHECKING:
    from statefleet.engine.runtime.outbox import OutboxRow
    from statefleet.engine.runtime.tally import Tally

__all__ = ["Backend", "BackendUnavailable", "PoolReply", "ShardReply", "TaskClaim"]


class BackendUnavailable(RuntimeError):
    """The backend cannot host the engine as configured; the message says what to change."""


@record
class TaskClaim:
    """The pool a shard claims the due tasks its steps create for, and the lease.

    The engine sends one with the events it applies when it will hand the tasks those
    steps create to that pool itself: they are inserted running, leased to ``owner``
    (the pool's lease owner), and come back as jobs carrying their claim
    (``OutboxRow.claim``) instead of going through the broker and a claim of their own.
    ``lease_ms`` and ``margin_ms`` are the engine's task lease settings, as a pool's
    claim uses them.
    """

    owner: str
    lease_ms: int
    margin_ms: int


@record
class ShardReply:
    """One outcome name per event (``applied``, ``duplicate``, ``not_running``,
    ``unknown_instance``) and the committed, unpublished outbox rows."""

    outcomes: list[str]
    outbox: list[OutboxRow]
    #: What the shard counted since its previous reply (engine/runtime/tally.py).
    tally: Tally | None = None


@record
class PoolReply:
    """What happened to each job, committed outbox rows, indexes of jobs to redeliver."""

    results: list[str]
    outbox: list[OutboxRow]
    failed: list[int]
    #: What the pool counted since its previous reply (engine/runtime/tally.py).
    tally: Tally | None = None
    #: The pool's lease owner now (a restarted pool has a new one): the admitter claims
    #: the tasks it hands this pool under it.
    owner: str | None = None


class Backend(Protocol):
    @property
    def shard_count(self) -> int: ...

    @property
    def pool_count(self) -> int: ...

    async def apply(
        self, shard: int, events: Sequence[EventJobData], claim: TaskClaim | None = None
    ) -> ShardReply: ...

    async def run_tasks(self, pool: int, jobs: Sequence[TaskJobData]) -> PoolReply: ...

    async def ready(self) -> list[str]:
        """Returns once every shard and pool can take work (its database pool open, its
        handlers built), with each pool's lease owner in index order; raises what the
        first one that cannot says."""
        ...

    async def stats(self) -> list[dict[str, int]]:
        """Each shard's counters: ``resident``, ``peak_resident``, ``actors``, ``commits``."""
        ...

    async def close(self) -> None: ...
