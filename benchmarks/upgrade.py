"""Upgrades: the dry run and the apply over ``instances`` running instances.

The instances are review-flow v1 (``tests/fixtures/review-v1.json``) spread over four
states along five paths, made through the real runtime: ``start_many`` and then their
events applied by ``InstanceRuntime.apply`` in group-committed batches, so their audit
logs are what production writes. v2 renames a state, adds one, removes one and guards
an event with a field v1 lacks (``contextDefaults`` supplies it).

Figures:

- ``replay_per_s``: instances replayed and judged per second by the pure replay
  (``replay.judge``) over histories already in memory, the CPU cost alone (target
  >= 20,000/s), as the dry run runs it: identical histories (same events, payloads
  and recorded states; here the five paths) share one replay (``ReplayCache``).
- ``replay_distinct_per_s``: the same histories with a field unique to each instance
  added to the payload of every event after the start (which the machines ignore, so
  the verdicts stay the same): no two histories are alike, and only their common start
  (``xstate.init``, ``WORKFLOW_START``) is shared.
- ``replay_uncached_per_s``: every history replayed in full (no ``ReplayCache``).
- ``dry_run_per_s``: instances per second of a whole dry run (``Upgrades.create``):
  pages of instances, their histories and open tasks read in bulk (one statement each
  per page), replays, items written.
- ``apply_per_s``: instances moved per second by an apply, from the request until the
  job reports done: planning, the outbox events, the engine loop delivering them to
  the shards, each move committed as a step with its audit row.

Postgres is ``DATABASE_URL`` or a throwaway server; the run uses a fresh database.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from typing import Any

from benchmarks import common, machine_info, pg
from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.interpreter import Snapshot, load_machine
from statefleet.engine.ports.queue import EventJobData
from statefleet.engine.runtime import InstanceRuntime, Publisher, StartRequest, WorkflowService
from statefleet.engine.runtime.checkpoints import RecentCheckpoints
from statefleet.engine.runtime.definitions import deploy_definition
from statefleet.engine.runtime.replay import HistoryEntry, ReplayCache, judge
from statefleet.engine.runtime.upgrade_plans import UpgradeRequest
from statefleet.engine.runtime.upgrades import history_entry
from statefleet.engine.store.db import create_pool

TENANT = common.TENANT
FIXTURES = common.ROOT / "tests" / "fixtures"
V1 = json.loads((FIXTURES / "review-v1.json").read_text())
V2 = json.loads((FIXTURES / "review-v2.json").read_text())
#: Events per path (instance index % 5) after WORKFLOW_START.
PATHS: list[list[tuple[str, dict[str, Any]]]] = [
    [],
    [("SUBMIT", {"priority": "low"})],
    [("SUBMIT", {"priority": "high"})],
    [("SKIP", {})],
    [("SUBMIT", {"priority": "low"}), ("REVIEW_DONE", {})],
]
STATE_MAP = {"review": "legal_review", "archive": "approved"}
DEFAULTS = {"threshold": 0}
CHUNK = 1_000


async def populate(runtime: InstanceRuntime, definition_id: uuid.UUID, count: int) -> None:
    """``count`` running v1 instances along the five paths, through the real runtime."""
    for offset in range(0, count, CHUNK):
        started = await runtime.start_many(
            TENANT, definition_id, [StartRequest({})] * min(CHUNK, count - offset), start_event=None
        )
        ids = [s.instance_id for s in started]
        rounds: list[list[EventJobData]] = [[], [], []]
        for n, instance in enumerate(ids):
            events = [("WORKFLOW_START", {}), *PATHS[(offset + n) % 5]]
            for step, (event_type, payload) in enumerate(events):
                rounds[step].append(
                    EventJobData(TENANT, str(instance), f"e{step}-{instance}", event_type, payload)
                )
        for batch in rounds:
            for start in range(0, len(batch), 512):
                await runtime.apply(batch[start : start + 512])


async def replay_rates(
    service: WorkflowService, v1_id: uuid.UUID
) -> tuple[float, float, float, int]:
    """Replays per second of the pure part, over every history read beforehand: as the
    dry run does it (identical histories share a replay, ``ReplayCache``), and with
    every history replayed (no cache)."""
    machine = load_machine(V2)
    async with service.pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT id, snapshot FROM workflow_instances WHERE tenant_id = $1"
            " AND definition_id = $2 AND status = 'running'",
            TENANT,
            v1_id,
        )
        histories: dict[uuid.UUID, list[HistoryEntry]] = {}
        for start in range(0, len(rows), CHUNK):
            ids = [r["id"] for r in rows[start : start + CHUNK]]
            for r in await connection.fetch(
                "SELECT instance_id, seq, type, payload, state_after, effects"
                " FROM workflow_events WHERE tenant_id = $1 AND instance_id = ANY($2)"
                " ORDER BY instance_id, seq",
                TENANT,
                ids,
            ):
                histories.setdefault(r["instance_id"], []).append(history_entry(r))
    work = [(histories[r["id"]], Snapshot.from_dict(r["snapshot"])) for r in rows]
    distinct = [
        (
            [
                h if h.seq < 2 else dataclasses.replace(h, payload={**h.payload, "n": n})
                for h in history
            ],
            snapshot,
        )
        for n, (history, snapshot) in enumerate(work)
    ]
    rates = []
    for cache, histories_of in ((ReplayCache(), work), (ReplayCache(), distinct), (None, work)):
        began = time.perf_counter()
        for history, snapshot in histories_of:
            judge(
                machine,
                history,
                snapshot,
                state_map=STATE_MAP,
                context_defaults=DEFAULTS,
                cache=cache,
            )
        rates.append(len(work) / (time.perf_counter() - began))
    return rates[0], rates[1], rates[2], len(work)


async def measure(admin_dsn: str, instances: int) -> dict[str, float]:
    async with pg.fresh_database(admin_dsn) as dsn:
        pool = await create_pool(dsn, max_size=8)
        queue = MemoryQueue()
        engine = common.local_engine(pool, queue)
        try:
            runtime = InstanceRuntime(pool, Publisher(pool, queue), checkpoints=RecentCheckpoints())
            async with pool.acquire() as connection:
                v1 = await deploy_definition(connection, TENANT, V1)
                await deploy_definition(connection, TENANT, V2)
            began = time.perf_counter()
            await populate(runtime, v1.id, instances)
            populated_s = time.perf_counter() - began
            service = WorkflowService(pool, engine.runtime)
            replay_per_s, distinct_per_s, uncached_per_s, replayed = await replay_rates(
                service, v1.id
            )
            assert replayed == instances, (replayed, instances)

            request = UpgradeRequest(1, 2, state_map=STATE_MAP, context_defaults=DEFAULTS)
            began = time.perf_counter()
            dry = await service.upgrades.create(TENANT, V1["id"], request, limit=1)
            dry_s = time.perf_counter() - began
            assert dry.total == instances, dry

            await engine.start()
            apply = UpgradeRequest(
                1, 2, state_map=STATE_MAP, context_defaults=DEFAULTS, dry_run=False
            )
            began = time.perf_counter()
            report = await service.upgrades.create(TENANT, V1["id"], apply, limit=1)
            planned_s = 0.0 if report.status == "planning" else time.perf_counter() - began
            while report.status != "done":
                await asyncio.sleep(1.0)
                report = await service.upgrades.get(TENANT, report.id, limit=1)
                if not planned_s and report.status != "planning":
                    planned_s = time.perf_counter() - began
            apply_s = time.perf_counter() - began
        finally:
            await engine.close()
            await queue.close()
            await pool.close()
    return {
        "instances": float(instances),
        "populate_s": populated_s,
        "replay_per_s": replay_per_s,
        "replay_distinct_per_s": distinct_per_s,
        "replay_uncached_per_s": uncached_per_s,
        "dry_run_s": dry_s,
        "dry_run_per_s": instances / dry_s,
        "apply_planned_s": planned_s,
        "apply_s": apply_s,
        "moved": float(report.moved),
        "apply_per_s": report.moved / apply_s,
    }


def main(*, instances: int = 100_000, out: Any = None) -> dict[str, Any]:
    info = machine_info.describe()
    with pg.server() as admin_dsn:
        figures = asyncio.run(measure(admin_dsn, instances))
    apply_what = (
        f"apply: {figures['moved']:,.0f} moved in {figures['apply_s']:.1f} s "
        f"(planned in {figures['apply_planned_s']:.1f} s)"
    )
    dry_what = f"dry run, end to end ({figures['dry_run_s']:.1f} s)"
    lines = [
        f"{instances:,} running instances of review-flow v1 (made in "
        f"{figures['populate_s']:.1f} s), upgraded to v2",
        f"{'what':<58} {'per s':>10}",
        f"{'replay as the dry run does it (target >= 20,000)':<58} "
        f"{figures['replay_per_s']:>10,.0f}",
        f"{'replay, no two histories alike (common start shared)':<58} "
        f"{figures['replay_distinct_per_s']:>10,.0f}",
        f"{'replay, every history replayed in full (no ReplayCache)':<58} "
        f"{figures['replay_uncached_per_s']:>10,.0f}",
        f"{dry_what:<58} {figures['dry_run_per_s']:>10,.0f}",
        f"{apply_what:<58} {figures['apply_per_s']:>10,.0f}",
    ]
    return common.finish("upgrade", info, {"instances": instances}, figures, lines, out)
