"""Upgrade requests: the dry run over every instance, and the apply as a job.

A request (``POST /v1/definitions/{key}/upgrades``) is a row of ``upgrades``. Its dry
run reads the running instances of version A a page at a time, and each page's audit
logs and open tasks in one statement each (never one query per instance), replays
every history on B (:func:`~statefleet.engine.runtime.replay.judge`, pure) and stores
one ``upgrade_items`` row per instance with its verdict.

An apply does the same, and in each page's transaction also writes one engine-made
``xstate.upgrade`` event per chosen instance to the outbox; after the commit they go
to the queue and from there to the shard owning each instance, which makes the move
as a step (``upgrades.py``) and marks the item moved or skipped. The request is then
a job whose progress is those marks (:meth:`Upgrades.get`). The outbox makes the job
durable: an event a process loses on the way is re-sent by the sweeper.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from statefleet.engine.interpreter import Machine, Snapshot, load_machine
from statefleet.engine.record import record
from statefleet.engine.runtime.definitions import Definition
from statefleet.engine.runtime.instances import InstanceRuntime, event_outbox_row
from statefleet.engine.runtime.outbox import OutboxRow, insert_outbox
from statefleet.engine.runtime.replay import (
    UPGRADE_EVENT,
    HistoryEntry,
    OpenWork,
    ReplayCache,
    judge,
    plan_open_work,
    state_paths,
)
from statefleet.engine.runtime.upgrades import history_entry, open_work, takes, upgrade_event_id
from statefleet.engine.store.db import Connection, Pool, json_text
from statefleet.engine.store.queries import load_queries

__all__ = [
    "VERDICTS",
    "InvalidUpgrade",
    "UnknownUpgrade",
    "UpgradeItem",
    "UpgradeReport",
    "UpgradeRequest",
    "Upgrades",
]

log = logging.getLogger(__name__)

SQL = load_queries("upgrades.sql")

VERDICTS = ("compatible", "diverged", "unmappable", "error")
#: Below this many planned moves, a progress report checks which instances stopped.
_EXACT_BELOW = 5_000

#: ``(tenant, key, version) -> Definition``, raising the service's lookup errors.
FindDefinition = Callable[[str, str, int], Awaitable[Definition]]


class InvalidUpgrade(ValueError):
    """The request cannot be planned; ``path`` names the offending field of the body."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


class UnknownUpgrade(LookupError):
    pass


@record
class UpgradeRequest:
    from_version: int
    to_version: int
    state_map: Mapping[str, str] = field(default_factory=dict)
    context_defaults: Mapping[str, Any] = field(default_factory=dict)
    #: Only these instances (those of them running on A); None: every running one.
    instance_ids: Sequence[uuid.UUID] | None = None
    dry_run: bool = True
    force: bool = False


@record
class UpgradeItem:
    instance_id: uuid.UUID
    verdict: str
    detail: dict[str, Any]
    chosen: bool
    outcome: str
    applied_verdict: str | None


@record
class UpgradeReport:
    id: uuid.UUID
    definition_key: str
    from_version: int
    to_version: int
    state_map: dict[str, str]
    context_defaults: dict[str, Any]
    dry_run: bool
    force: bool
    status: str
    total: int
    counts: dict[str, int]
    #: Of the chosen instances: moved, skipped (re-planned or finished), still pending.
    chosen: int
    moved: int
    skipped: int
    pending: int
    items: list[UpgradeItem]
    next_cursor: str | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None


@dataclass(slots=True)
class _Page:
    ids: list[uuid.UUID] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)
    details: list[str | None] = field(default_factory=list)
    chosen: list[bool] = field(default_factory=list)


class Upgrades:
    """Plans, applies and reports upgrades; see the module docstring."""

    def __init__(
        self,
        pool: Pool,
        runtime: InstanceRuntime,
        find_definition: FindDefinition,
        *,
        page_size: int = 1000,
    ) -> None:
        """``find_definition`` is the service's lookup, with its errors for unknown keys
        and versions (passed in: the service holds this object)."""
        self.pool = pool
        self.runtime = runtime
        self.find_definition = find_definition
        self.page_size = page_size
        #: Applies being planned by this process (kept referenced until they finish).
        self._jobs: set[asyncio.Task[None]] = set()

    async def create(
        self, tenant_id: str, key: str, request: UpgradeRequest, *, limit: int = 100
    ) -> UpgradeReport:
        """Plans the request (and, unless a dry run, starts moving); returns the report.

        A dry run returns once planned. An apply returns at once, ``planning``: its pages
        are planned by a task of this process (each page's verdicts and move events
        committed together, the counts updated per page), and the shards move the
        instances as their events arrive; :meth:`get` reports the progress.

        Raises:
            UnknownDefinitionKey, UnknownDefinitionVersion: no such key or version.
            InvalidUpgrade: the versions are equal, or the state map names a state of
                neither version.
        """
        source, target = await self._versions(tenant_id, key, request)
        machine_a, machine_b = load_machine(source.spec), load_machine(target.spec)
        _check_map(machine_a, machine_b, request.state_map)
        upgrade_id = uuid.uuid4()
        async with self.pool.acquire() as connection:
            await connection.execute(
                SQL["insert_upgrade"],
                tenant_id,
                upgrade_id,
                key,
                source.id,
                target.id,
                source.version,
                target.version,
                dict(request.state_map),
                dict(request.context_defaults),
                request.dry_run,
                request.force,
            )
        job = self._run(tenant_id, upgrade_id, source.id, machine_a, machine_b, request)
        if request.dry_run:
            await job
        else:
            task = asyncio.create_task(job, name=f"upgrade-{upgrade_id}")
            self._jobs.add(task)
            task.add_done_callback(self._jobs.discard)
        return await self.get(tenant_id, upgrade_id, limit=limit)

    async def _run(
        self,
        tenant_id: str,
        upgrade_id: uuid.UUID,
        source_id: uuid.UUID,
        machine_a: Machine,
        machine_b: Machine,
        request: UpgradeRequest,
    ) -> None:
        try:
            total, counts, chosen = await self._plan(
                tenant_id, upgrade_id, source_id, machine_a, machine_b, request
            )
        except Exception as error:
            log.exception("planning upgrade %s failed", upgrade_id)
            async with self.pool.acquire() as connection:
                await connection.execute(SQL["fail_upgrade"], tenant_id, upgrade_id, str(error))
            if request.dry_run:
                raise
            return
        status = "applying" if chosen else "done"
        async with self.pool.acquire() as connection:
            await connection.execute(
                SQL["finish_planning"], tenant_id, upgrade_id, total, status, counts
            )

    async def get(
        self, tenant_id: str, upgrade_id: uuid.UUID, *, cursor: str | None = None, limit: int = 100
    ) -> UpgradeReport:
        """The request with its progress and one page of its items (by instance id).

        Raises:
            UnknownUpgrade: no such request for this tenant.
            InvalidUpgrade: ``cursor`` is not an instance id.
        """
        try:
            after = uuid.UUID(cursor) if cursor else uuid.UUID(int=0)
        except ValueError as exc:
            raise InvalidUpgrade("cursor", "not a cursor this API returned") from exc
        async with self.pool.acquire() as connection:
            row = await connection.fetchrow(SQL["get_upgrade"], tenant_id, upgrade_id)
            if row is None:
                raise UnknownUpgrade(f"upgrade {upgrade_id} not found")
            counted = await connection.fetchrow(SQL["item_progress"], tenant_id, upgrade_id)
            assert counted is not None, "an aggregate returns one row"
            moved, skipped, pending = counted["moved"], counted["skipped"], counted["planned"]
            status = row["status"]
            if pending and pending <= _EXACT_BELOW:
                # Only the last stretch needs to know which planned instances stopped (they
                # will never move); while thousands wait, the probe is not worth its cost.
                stopped = await connection.fetchval(
                    SQL["planned_not_running"], tenant_id, upgrade_id
                )
                skipped, pending = skipped + stopped, pending - stopped
            if status == "applying" and pending == 0:
                await connection.execute(SQL["finish_upgrade"], tenant_id, upgrade_id)
                row = await connection.fetchrow(SQL["get_upgrade"], tenant_id, upgrade_id)
                assert row is not None
                status = row["status"]
            items = await connection.fetch(
                SQL["list_items"], tenant_id, upgrade_id, after, limit + 1
            )
        page = [
            UpgradeItem(
                r["instance_id"],
                r["verdict"],
                r["detail"],
                r["chosen"],
                r["outcome"],
                r["applied_verdict"],
            )
            for r in items[:limit]
        ]
        more = len(items) > limit and bool(page)
        counts = {v: int((row["counts"] or {}).get(v, 0)) for v in VERDICTS}
        return UpgradeReport(
            id=row["id"],
            definition_key=row["definition_key"],
            from_version=row["from_version"],
            to_version=row["to_version"],
            state_map=row["state_map"],
            context_defaults=row["context_defaults"],
            dry_run=row["dry_run"],
            force=row["force"],
            status=status,
            total=row["total"],
            counts=counts,
            chosen=moved + skipped + pending,
            moved=moved,
            skipped=skipped,
            pending=pending,
            items=page,
            next_cursor=str(page[-1].instance_id) if more else None,
            error=row["error"],
            created_at=row["created_at"],
            finished_at=row["finished_at"],
        )

    # -- planning -----------------------------------------------------------------------

    async def _versions(
        self, tenant_id: str, key: str, request: UpgradeRequest
    ) -> tuple[Definition, Definition]:
        source = await self.find_definition(tenant_id, key, request.from_version)
        target = await self.find_definition(tenant_id, key, request.to_version)
        if request.from_version == request.to_version:
            raise InvalidUpgrade("toVersion", "must differ from fromVersion")
        return source, target

    async def _plan(
        self,
        tenant_id: str,
        upgrade_id: uuid.UUID,
        source_id: uuid.UUID,
        machine_a: Machine,
        machine_b: Machine,
        request: UpgradeRequest,
    ) -> tuple[int, dict[str, int], int]:
        """Every page: read, judge, store the items (and the moves' events). Returns the
        total, the counts by verdict and how many were chosen."""
        counts = dict.fromkeys(VERDICTS, 0)
        total = chosen = 0
        after = uuid.UUID(int=0)
        ids = list(request.instance_ids) if request.instance_ids is not None else None
        cache = ReplayCache()
        while True:
            async with self.pool.acquire() as connection:
                # One snapshot for the page's instances, histories and tasks: a step
                # committed between two of the reads would make them disagree.
                async with connection.transaction(isolation="repeatable_read", readonly=True):
                    instances = await connection.fetch(
                        SQL["plan_page"], tenant_id, source_id, after, self.page_size, ids
                    )
                    if not instances:
                        break
                    page = await self.judge_page(
                        connection, tenant_id, instances, machine_a, machine_b, request, cache
                    )
                after = instances[-1]["id"]
                outbox: list[OutboxRow] = []
                async with connection.transaction():
                    await connection.execute(
                        SQL["insert_items"],
                        tenant_id,
                        upgrade_id,
                        page.ids,
                        page.verdicts,
                        page.details,
                        page.chosen,
                    )
                    total += len(page.ids)
                    chosen += sum(page.chosen)
                    for verdict in page.verdicts:
                        counts[verdict] += 1
                    await connection.execute(
                        SQL["finish_planning"], tenant_id, upgrade_id, total, "planning", counts
                    )
                    moving = [i for i, c in zip(page.ids, page.chosen, strict=True) if c]
                    if moving:
                        payload = {"upgradeId": str(upgrade_id)}
                        outbox = await insert_outbox(
                            connection,
                            [
                                event_outbox_row(
                                    tenant_id,
                                    i,
                                    upgrade_event_id(upgrade_id, i),
                                    UPGRADE_EVENT,
                                    payload,
                                )
                                for i in moving
                            ],
                        )
            await self.runtime.publish(outbox)
            if len(instances) < self.page_size:
                break
        return total, counts, chosen

    async def judge_page(
        self,
        connection: Connection,
        tenant_id: str,
        instances: Sequence[Mapping[str, Any]],
        machine_a: Machine,
        machine_b: Machine,
        request: UpgradeRequest,
        cache: ReplayCache | None = None,
    ) -> _Page:
        """Verdicts for one page of instances: two statements, then pure replays."""
        ids = [r["id"] for r in instances]
        histories: dict[uuid.UUID, list[HistoryEntry]] = {}
        for r in await connection.fetch(SQL["histories"], tenant_id, ids):
            histories.setdefault(r["instance_id"], []).append(history_entry(r))
        work: dict[uuid.UUID, list[OpenWork]] = {}
        for r in await connection.fetch(SQL["open_work"], tenant_id, ids):
            work.setdefault(r["instance_id"], []).append(open_work(r))
        page = _Page()
        for r in instances:
            instance_id = r["id"]
            history = histories.get(instance_id, [])
            verdict = judge(
                machine_b,
                history,
                Snapshot.from_dict(r["snapshot"]),
                state_map=request.state_map,
                context_defaults=request.context_defaults,
                cache=cache,
            )
            if verdict.verdict != "unmappable" and instance_id in work:
                verdict.work.extend(
                    plan_open_work(
                        machine_a,
                        machine_b,
                        history,
                        work[instance_id],
                        state_map=request.state_map,
                    )
                )
            page.ids.append(instance_id)
            page.verdicts.append(verdict.verdict)
            page.details.append(json_text(verdict.detail()))
            page.chosen.append(not request.dry_run and takes(verdict.verdict, request.force))
        return page


def _check_map(machine_a: Machine, machine_b: Machine, state_map: Mapping[str, str]) -> None:
    """Each key must be a state of A and each value a state of B (dotted paths)."""
    paths_a = state_paths(machine_a)
    paths_b = state_paths(machine_b)
    for old, new in state_map.items():
        if old not in paths_a:
            known = ", ".join(sorted(paths_a))
            raise InvalidUpgrade(f"stateMap.{old}", f"'{old}' is not a state of A ({known})")
        if new not in paths_b:
            known = ", ".join(sorted(paths_b))
            raise InvalidUpgrade(f"stateMap.{old}", f"'{new}' is not a state of B ({known})")
