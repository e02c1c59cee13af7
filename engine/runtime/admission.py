"""The admitter: held work handed on in weighted fair order, within task limits.

Interactive work (priority 10: single starts, sends, completions) is published as soon
as it commits. Everything below it, and every task under a concurrency or rate limit,
is *held* in Postgres (``outbox.held``, ``tasks.held``; migration 0011) and taken from
there by the admitter of every engine loop, a batch at a time:

- **Fair share.** Each pass shares its batch among the tenants with waiting work in
  proportion to their weights (``tenant_scheduling.py``); within a tenant, higher
  priority first, then older first. One tenant's 100,000-instance batch takes its share
  of each pass, never the whole engine, and the broker holds no backlog for an
  interactive job to wait behind: held events go straight to their shards and held
  tasks straight to a pool (as engine-made events do), so the broker carries only
  interactive work.
- **Limits.** A task pass counts, per tenant, the attempts running, by type and by spec
  limit key, and admits a task only
  while its tenant's limit for its type and its spec's ``task.limits`` leave room, and
  only as fast as their rates allow (a GCRA per key in ``rate_limits``, with 100 ms of
  burst). Task passes run one at a time across the cluster (an advisory lock held for
  the pass's transaction, a few milliseconds), so the count a pass starts from is still
  true when it admits: a limit is never exceeded, whichever worker admits. A task over a
  limit simply stays held (``throttled`` in the tally), never failed or dropped.
- **Claims.** A task the pass admits is claimed in the pass's transaction for the pool
  it is handed to (running, one more attempt, leased to that pool's lease owner, which
  the engine learns from ``Backend.ready`` and every pool reply), so the pool runs it
  without a claim of its own and renews its lease while it waits for a slot: one
  update of the task's row and no claim statement per task, where admitting and then
  claiming made two of each.
- **Durability.** A taken event row is marked published in the statement that takes
  it; if its hand-over fails it is released to wait again. A claimed task whose
  hand-over fails has its claim expired at once, as a dead pool's would be (it counts as
  an attempt: the pool may have run it), and the sweeper re-sends it. If the process
  dies, the sweeper re-sends both through the broker (published events never applied,
  expired leases), as for any lost job.

Why Postgres and not the broker: BullMQ keeps groups and rate limits for its paid
edition, Cloud Tasks has neither priorities nor groups, and the memory queue is one
process's. Deciding order and admission in the engine keeps the drivers dumb pipes and
makes all of it behave the same under every driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta

from statefleet.engine.ports.queue import TaskJobData
from statefleet.engine.record import record
from statefleet.engine.runtime.outbox import OutboxRow
from statefleet.engine.runtime.tally import Tally
from statefleet.engine.runtime.tenant_scheduling import (
    ALL_TYPES,
    TenantScheduling,
    load_schedulings,
)
from statefleet.engine.store.db import Connection, Pool, Record
from statefleet.engine.store.queries import load_queries

__all__ = [
    "AdmissionSettings",
    "Admitter",
    "DeliverEvents",
    "PickPool",
    "RunTasks",
    "expire_claims",
    "fair_shares",
]

log = logging.getLogger(__name__)
SQL = load_queries("admission.sql")

#: Delivers taken event rows to their shards; returns the rows it could not deliver.
DeliverEvents = Callable[[list[OutboxRow]], Awaitable[list[OutboxRow]]]
#: Runs admitted task jobs on pool ``i`` (they were claimed for it); returns the indexes
#: of the jobs that failed.
RunTasks = Callable[[int, list[TaskJobData]], Awaitable[list[int]]]
#: The pool the next admitted tasks go to, and its lease owner; None while it is unknown.
PickPool = Callable[[], "tuple[int, str] | None"]
#: Burst of a rate limit: this much time's worth of starts may go at once.
RATE_BURST_S = 0.1
#: How long a tenant's scheduling settings are cached by one admitter.
SCHEDULING_TTL_S = 1.0


@record
class AdmissionSettings:
    #: Sleep between passes that found nothing to admit (ms).
    poll_ms: int = 100
    #: Held events one pass takes, shared among tenants.
    event_batch: int = 500
    #: Held tasks one pass admits at most, shared among tenants.
    task_batch: int = 200
    #: Passes in flight at once per kind (each waits for its shards or pool).
    lanes: int = 4
    #: The lease of a task claimed for a pool: its timeout plus the margin, at most the
    #: default (as a pool's own claim; ``EngineSettings.task_default_lease_ms``).
    lease_ms: int = 15_000
    lease_margin_ms: int = 5_000


def fair_shares(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """``total`` shared in proportion to ``weights`` (each tenant gets at least one).

    Rounded up, so the shares may add up to a little more than ``total``: a pass never
    gives a waiting tenant nothing.
    """
    whole = sum(weights.values())
    return {t: max(1, math.ceil(total * w / whole)) for t, w in weights.items()}


class _Gcra:
    """One rate limit's state: the theoretical arrival time of the next start (GCRA).

    Hand-written because it is a few lines over a row the pass already holds; the
    rate-limit libraries on PyPI keep their state in Redis or in process memory, and
    limits here must hold across every worker through Postgres.
    """

    __slots__ = ("interval", "tat", "tolerance")

    def __init__(self, per_second: float, tat: datetime | None, now: datetime) -> None:
        self.interval = timedelta(seconds=1 / per_second)
        burst = max(1, math.floor(per_second * RATE_BURST_S))
        self.tolerance = self.interval * (burst - 1)
        self.tat = tat if tat is not None else now

    def allows(self, now: datetime) -> bool:
        return max(self.tat, now) - now <= self.tolerance

    def take(self, now: datetime) -> None:
        self.tat = max(self.tat, now) + self.interval


class Admitter:
    """Takes held work from Postgres and hands it on: :meth:`start`, :meth:`stop`."""

    def __init__(
        self,
        pool: Pool,
        *,
        deliver_events: DeliverEvents,
        run_tasks: RunTasks | None,
        tally: Tally,
        settings: AdmissionSettings | None = None,
        pick_pool: PickPool | None = None,
    ) -> None:
        self.pool = pool
        self.deliver_events = deliver_events
        self.run_tasks = run_tasks
        self.pick_pool = pick_pool
        self.tally = tally
        self.settings = settings or AdmissionSettings()
        self._lanes: list[asyncio.Task[None]] = []
        self._stopping = False
        self._wake = asyncio.Event()
        #: Per kind of work: set while its passes find some (see _lane).
        self._found: list[asyncio.Event] = []
        self._schedulings: dict[str, tuple[float, TenantScheduling]] = {}

    # -- life cycle ---------------------------------------------------------------------

    def start(self) -> None:
        s = self.settings
        self._stopping = False
        kinds: list[tuple[str, Callable[[], Awaitable[int | None]]]] = [("events", self.event_pass)]
        if self.run_tasks is not None and self.pick_pool is not None:
            kinds.append(("tasks", self.task_pass))
        self._found = [asyncio.Event() for _ in kinds]
        self._lanes = [
            asyncio.create_task(
                self._lane(one_pass, found, first=i == 0), name=f"statefleet-admit-{kind}-{i}"
            )
            for (kind, one_pass), found in zip(kinds, self._found, strict=True)
            for i in range(max(1, s.lanes))
        ]

    async def stop(self, timeout_s: float = 10.0) -> None:
        """Lets each lane finish the hand-over in progress (up to ``timeout_s``)."""
        lanes, self._lanes = self._lanes, []
        if not lanes:
            return
        self._stopping = True
        self._wake.set()
        for found in self._found:
            found.set()
        _, pending = await asyncio.wait(lanes, timeout=timeout_s)
        for lane in pending:
            lane.cancel()
        for lane in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await lane

    async def _lane(
        self, one_pass: Callable[[], Awaitable[int | None]], found: asyncio.Event, *, first: bool
    ) -> None:
        """Passes of one kind, one at a time, back to back while they find work.

        Only the first lane of a kind looks while there is none (every poll interval);
        the others join once a pass has found some and park again after a pass that
        finds none. An idle engine so makes one pass per kind per interval, not one per
        lane: with the defaults (100 ms, four lanes, two kinds) twenty passes a second
        instead of eighty, each a transaction.
        """
        poll = self.settings.poll_ms / 1000
        while not self._stopping:
            if not first and not found.is_set():
                await found.wait()
                continue
            try:
                taken = await one_pass()
            except Exception:
                log.exception("admission pass failed; trying again in %d ms", poll * 1000)
                taken = 0
            if self._stopping:
                return
            if taken is None:  # another engine's pass holds the lock: try again soon
                await asyncio.sleep(min(poll, 0.01))
            elif taken == 0:
                found.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), poll)
                self._wake.clear()
            else:
                found.set()

    async def _scheduling(
        self, connection: Connection, tenants: Sequence[str]
    ) -> dict[str, TenantScheduling]:
        now = time.monotonic()
        stale = [
            t
            for t in tenants
            if t not in self._schedulings or self._schedulings[t][0] < now - SCHEDULING_TTL_S
        ]
        if stale:
            for tenant, scheduling in (await load_schedulings(connection, stale)).items():
                self._schedulings[tenant] = (now, scheduling)
        return {t: self._schedulings[t][1] for t in tenants}

    # -- events -------------------------------------------------------------------------

    async def event_pass(self) -> int:
        """Takes one fair batch of held events and delivers it; returns how many."""
        async with self.pool.acquire() as connection:
            tenants = [
                r["tenant_id"] for r in await connection.fetch(SQL["tenants_with_held_events"])
            ]
            if not tenants:
                return 0
            scheduling = await self._scheduling(connection, tenants)
            shares = fair_shares(
                self.settings.event_batch, {t: scheduling[t].weight for t in tenants}
            )
            records = await connection.fetch(
                SQL["take_held_events"], list(shares), list(shares.values())
            )
        if not records:
            return 0
        rows = [_event_row(r) for r in records]
        failed = await self.deliver_events(rows)
        if failed:
            await _release(self.pool, SQL["release_events"], [(r.tenant_id, r.id) for r in failed])
        self.tally.count_admitted("event", len(rows) - len(failed))
        return len(rows)

    # -- tasks --------------------------------------------------------------------------

    async def task_pass(self) -> int | None:
        """Admits one fair batch of held tasks within their limits, claimed for the next
        pool, and runs it there.

        Returns how many it admitted, or None when another engine's pass was running.
        """
        assert self.run_tasks is not None
        assert self.pick_pool is not None
        target = self.pick_pool()
        if target is None:  # that pool's lease owner is not known yet (it is starting)
            return 0
        index, owner = target
        async with self.pool.acquire() as connection, connection.transaction():
            if not await connection.fetchval(SQL["lock_task_admission"]):
                return None
            # Plans made for this pass's own arguments and the tables' present size: a
            # cached generic plan made while the tables were small (a fresh database's
            # first batch) kept scanning them once they were not.
            await connection.execute("SET LOCAL plan_cache_mode = force_custom_plan")
            tenants = [
                r["tenant_id"] for r in await connection.fetch(SQL["tenants_with_held_tasks"])
            ]
            if not tenants:
                return 0
            claimed = await self._admit(connection, tenants, owner)
        if not claimed:
            return 0
        jobs = [
            TaskJobData(
                tenant_id=r["tenant_id"],
                task_id=str(r["id"]),
                task_type=r["type"],
                claim={**r, "lease_owner": owner},
                admitted=True,
            )
            for r in claimed
        ]
        try:
            failed = await self.run_tasks(index, jobs)
        except Exception:
            log.exception("running %d admitted task(s) failed; their claims expire", len(jobs))
            failed = list(range(len(jobs)))
        if failed:
            await expire_claims(
                self.pool, [(claimed[i]["tenant_id"], claimed[i]["id"]) for i in failed], owner
            )
        self.tally.count_admitted("task", len(jobs) - len(failed))
        return len(jobs)

    async def _admit(self, connection: Connection, tenants: list[str], owner: str) -> list[Record]:
        """Within the pass's transaction: picks the tasks to admit and claims them under
        ``owner`` (the lease owner of the pool they go to); returns the claimed rows."""
        scheduling = await self._scheduling(connection, tenants)
        usage = _Usage(await connection.fetch(SQL["task_usage"], tenants))
        db_now: datetime = await connection.fetchval("SELECT now()")
        # Rate states of every tenant type limit, and of spec keys once candidates name them.
        type_rates = {
            (t, task_type): limit.per_second
            for t in tenants
            for task_type, limit in scheduling[t].task_limits.items()
            if limit.per_second is not None
        }
        rates = await self._rates(
            connection, {(t, f"type:{k}"): r for (t, k), r in type_rates.items()}, db_now
        )
        full_types = [
            (t, task_type)
            for t in tenants
            for task_type, limit in scheduling[t].task_limits.items()
            if (limit.concurrency is not None and usage.of_type(t, task_type) >= limit.concurrency)
            or (limit.per_second is not None and not rates[(t, f"type:{task_type}")].allows(db_now))
        ]
        full_keys = usage.full_keys()
        # A tenant at its limit for all its task types ("*") offers no candidate at all.
        full_tenants = {t for t, task_type in full_types if task_type == ALL_TYPES}
        open_tenants = [t for t in tenants if t not in full_tenants]
        if not open_tenants:
            return []
        shares = fair_shares(
            self.settings.task_batch, {t: scheduling[t].weight for t in open_tenants}
        )
        candidates = await connection.fetch(
            SQL["held_due_tasks"],
            list(shares),
            list(shares.values()),
            [t for t, _ in full_types],
            [k for _, k in full_types],
            [t for t, _ in full_keys],
            [k for _, k in full_keys],
        )
        rates.update(
            await self._rates(
                connection,
                {
                    (r["tenant_id"], f"key:{r['limit_key']}"): r["limit_per_second"]
                    for r in candidates
                    if r["limit_per_second"] is not None
                },
                db_now,
            )
        )
        chosen: list[Record] = []
        for task in candidates:
            tenant, task_type, key = task["tenant_id"], task["type"], task["limit_key"]
            # The tenant's limit for this type, and its limit for all its types.
            limits = [
                (name, limit)
                for name in (task_type, ALL_TYPES)
                if (limit := scheduling[tenant].task_limits.get(name)) is not None
            ]
            gates = [
                rates[(tenant, f"type:{name}")]
                for name, limit in limits
                if limit.per_second is not None
            ]
            if task["limit_per_second"] is not None:
                gates.append(rates[(tenant, f"key:{key}")])
            room = (
                all(
                    limit.concurrency is None or usage.of_type(tenant, name) < limit.concurrency
                    for name, limit in limits
                )
                and (
                    task["limit_concurrency"] is None
                    or usage.of_key(tenant, key) < task["limit_concurrency"]
                )
                and all(gate.allows(db_now) for gate in gates)
            )
            if not room:
                self.tally.count_throttled(task_type)
                continue
            for gate in gates:
                gate.take(db_now)
            usage.add(tenant, task_type, key)
            chosen.append(task)
        claimed: list[Record] = []
        if chosen:
            claimed = await connection.fetch(
                SQL["claim_admitted"],
                [r["row_id"] for r in chosen],
                owner,
                self.settings.lease_ms,
                self.settings.lease_margin_ms,
            )
        used = [(key, gate) for key, gate in rates.items() if gate.tat > db_now]
        if used:
            await connection.execute(
                SQL["save_rate_states"],
                [t for (t, _), _ in used],
                [k for (_, k), _ in used],
                [gate.tat for _, gate in used],
            )
        return claimed

    @staticmethod
    async def _rates(
        connection: Connection, limits: Mapping[tuple[str, str], float], now: datetime
    ) -> dict[tuple[str, str], _Gcra]:
        if not limits:
            return {}
        stored = {
            (r["tenant_id"], r["key"]): r["tat"]
            for r in await connection.fetch(
                SQL["rate_states"],
                sorted({t for t, _ in limits}),
                sorted({k for _, k in limits}),
            )
        }
        return {key: _Gcra(rate, stored.get(key), now) for key, rate in limits.items()}


async def expire_claims(pool: Pool, keys: Sequence[tuple[str, uuid.UUID]], owner: str) -> bool:
    """Claims made for ``owner`` whose hand-over failed: their leases expire now, as a
    dead pool's do (``expire_claims``); the admitter's and those of tasks claimed where
    they were created (``engine.py``). Returns False, logged, when that failed: the
    leases then expire by themselves and the sweeper re-sends the tasks."""
    return await _release(pool, SQL["expire_claims"], keys, owner)


async def _release(
    pool: Pool, query: str, keys: Sequence[tuple[str, uuid.UUID]], *args: object
) -> bool:
    try:
        async with pool.acquire() as connection:
            await connection.execute(query, [t for t, _ in keys], [i for _, i in keys], *args)
    except Exception:  # the sweeper re-sends them through the broker later
        log.exception("releasing %d claimed or taken item(s) failed", len(keys))
        return False
    return True


class _Usage:
    """Attempts running or admitted, per (tenant, type) and per (tenant, spec limit key)."""

    def __init__(self, records: Sequence[Record]) -> None:
        #: Per (tenant, type), and per (tenant, ``ALL_TYPES``): the tenant's total.
        self.types: dict[tuple[str, str], int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        self.caps: dict[tuple[str, str], int] = {}
        for r in records:
            tenant, n = r["tenant_id"], r["n"]
            self.types[(tenant, r["type"])] = self.types.get((tenant, r["type"]), 0) + n
            self.types[(tenant, ALL_TYPES)] = self.types.get((tenant, ALL_TYPES), 0) + n
            if r["limit_key"] is not None:
                key = (tenant, r["limit_key"])
                self.keys[key] = self.keys.get(key, 0) + n
                if r["cap"] is not None:
                    self.caps[key] = max(self.caps.get(key, 0), r["cap"])

    def of_type(self, tenant: str, task_type: str) -> int:
        return self.types.get((tenant, task_type), 0)

    def of_key(self, tenant: str, key: str | None) -> int:
        return 0 if key is None else self.keys.get((tenant, key), 0)

    def full_keys(self) -> list[tuple[str, str]]:
        """Spec keys at their concurrency already: their tasks are not even candidates."""
        return [key for key, cap in self.caps.items() if self.keys.get(key, 0) >= cap]

    def add(self, tenant: str, task_type: str, key: str | None) -> None:
        self.types[(tenant, task_type)] = self.of_type(tenant, task_type) + 1
        self.types[(tenant, ALL_TYPES)] = self.of_type(tenant, ALL_TYPES) + 1
        if key is not None:
            self.keys[(tenant, key)] = self.of_key(tenant, key) + 1


def _event_row(r: Record) -> OutboxRow:
    return OutboxRow(
        tenant_id=r["tenant_id"],
        id=r["id"],
        instance_id=r["instance_id"],
        queue=r["queue"],
        job_name=r["job_name"],
        data=r["data"],
        dedupe_key=r["dedupe_key"],
        held=True,
        priority=r["priority"],
    )
