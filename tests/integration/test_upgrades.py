"""Upgrades on real Postgres: dry-run verdicts, the apply through the shards, history.

1,000 running instances of review-flow v1 spread over four states and five paths; v2
(tests/fixtures/review-v2.json) renames ``review`` to ``legal_review``, adds ``audit``
(where high-priority submissions now go), removes ``archive`` (``SKIP`` now leads to
``approved``) and guards ``REVIEW_DONE`` with a context field v1 never had. The
expected verdict of each instance is derived here from the path the test drove it
along, not from the engine's replay.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from runtime_support import running_engine

from statefleet.engine.handlers import HandlerRegistry, TaskContext
from statefleet.engine.runtime import StartRequest, WorkflowService
from statefleet.engine.runtime.upgrade_plans import UpgradeReport, UpgradeRequest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TENANT = "acme"
N = 1_000
#: Paths by instance index % 5, the state each ends in, and its own sequence of events.
PATHS: dict[int, tuple[str, list[tuple[str, dict[str, Any]]]]] = {
    0: ("intake", []),
    1: ("review", [("SUBMIT", {"priority": "low"})]),
    2: ("review", [("SUBMIT", {"priority": "high"})]),
    3: ("archive", [("SKIP", {})]),
    4: ("approved", [("SUBMIT", {"priority": "low"}), ("REVIEW_DONE", {})]),
}
FULL_MAP = {"review": "legal_review", "archive": "approved"}


def spec(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return data


def expected_verdict(path: int, state_map: dict[str, str], defaults: dict[str, Any]) -> str:
    """The verdict by v2's rules, reasoned out per path (see the module docstring)."""
    if path == 3 and "archive" not in state_map:
        return "unmappable"  # v2 has no archive and nothing maps it
    if path == 2:
        return "diverged"  # v2 sends a high-priority SUBMIT to audit, v1 went to review
    if path == 4 and "threshold" not in defaults:
        return "error"  # v2's REVIEW_DONE guard reads context.threshold
    return "compatible"


async def wait_until(predicate: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def states(service: WorkflowService, ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    async with service.pool.acquire() as connection:
        rows = await connection.fetch(
            "SELECT id, snapshot->'value' AS value FROM workflow_instances WHERE id = ANY($1)",
            ids,
        )
    return {r["id"]: r["value"] for r in rows}


async def settle(service: WorkflowService, want: dict[uuid.UUID, Any]) -> None:
    async def there() -> bool:
        return await states(service, list(want)) == want

    await wait_until(there, "instances to reach their states")


async def all_items(service: WorkflowService, upgrade_id: uuid.UUID) -> dict[uuid.UUID, Any]:
    """Every item of a report, page by page (pages of 64 to exercise the cursor)."""
    items: dict[uuid.UUID, Any] = {}
    cursor: str | None = None
    while True:
        report = await service.upgrades.get(TENANT, upgrade_id, cursor=cursor, limit=64)
        for item in report.items:
            assert item.instance_id not in items
            items[item.instance_id] = item
        cursor = report.next_cursor
        if cursor is None:
            return items


async def finished(service: WorkflowService, upgrade_id: uuid.UUID) -> UpgradeReport:
    async def done() -> bool:
        return (await service.upgrades.get(TENANT, upgrade_id, limit=1)).status == "done"

    try:
        await wait_until(done, "the apply to finish")
    except AssertionError:
        print(await service.upgrades.get(TENANT, upgrade_id, limit=3))
        raise
    return await service.upgrades.get(TENANT, upgrade_id, limit=1)


async def test_dry_run_apply_and_history_of_an_upgrade(database_dsn: str) -> None:
    async with running_engine(database_dsn, HandlerRegistry()) as running:
        service = running.service
        v1 = await service.deploy(TENANT, spec("review-v1.json"))
        v2 = await service.deploy(TENANT, spec("review-v2.json"))
        assert (v1.version, v2.version) == (1, 2)
        started = await service.runtime.start_many(
            TENANT, v1.id, [StartRequest({}) for _ in range(N)]
        )
        ids = [s.instance_id for s in started]
        path_of = {instance: i % 5 for i, instance in enumerate(ids)}
        await settle(service, dict.fromkeys(ids, "intake"))
        for step in range(2):
            for instance, path in path_of.items():
                events = PATHS[path][1]
                if step < len(events):
                    await service.send(TENANT, instance, events[step][0], events[step][1])
        await settle(service, {i: PATHS[p][0] for i, p in path_of.items()})

        # Dry run 1: archive is not mapped, and v2's guard lacks its field.
        partial = {"review": "legal_review"}
        report = await service.upgrades.create(
            TENANT, "review-flow", UpgradeRequest(1, 2, state_map=partial)
        )
        assert report.dry_run
        assert report.status == "done"
        assert report.total == N
        want = {i: expected_verdict(p, partial, {}) for i, p in path_of.items()}
        got = await all_items(service, report.id)
        assert {i: item.verdict for i, item in got.items()} == want
        assert report.counts == {
            v: sum(1 for w in want.values() if w == v)
            for v in ("compatible", "diverged", "unmappable", "error")
        }
        # The divergence names the step, the event and both states.
        high = next(i for i, p in path_of.items() if p == 2)
        assert got[high].detail["divergence"] == {
            "seq": 2,
            "event": "SUBMIT",
            "expected": "legal_review",
            "got": "audit",
            "reason": "state",
        }
        assert not any(item.chosen for item in got.values())

        # Dry run 2: the full map and the default; the open archive tasks would go.
        defaults = {"threshold": 0}
        report = await service.upgrades.create(
            TENANT,
            "review-flow",
            UpgradeRequest(1, 2, state_map=FULL_MAP, context_defaults=defaults),
        )
        want = {i: expected_verdict(p, FULL_MAP, defaults) for i, p in path_of.items()}
        got = await all_items(service, report.id)
        assert {i: item.verdict for i, item in got.items()} == want
        archived = [i for i, p in path_of.items() if p == 3]
        assert [t["action"] for t in got[archived[0]].detail["tasks"]] == ["cancelled"]
        reviewed = next(i for i, p in path_of.items() if p == 1)
        assert [t["action"] for t in got[reviewed].detail["tasks"]] == ["kept"]
        # A dry run moved nothing.
        async with service.pool.acquire() as connection:
            on_v1 = await connection.fetchval(
                "SELECT count(*) FROM workflow_instances WHERE definition_id = $1", v1.id
            )
        assert on_v1 == N

        # Apply, while events for 100 of the instances arrive at the same time.
        submit = [i for i, p in path_of.items() if p == 0][:50]
        review_done = [i for i, p in path_of.items() if p == 1][:50]

        async def concurrent_events() -> None:
            for a, b in zip(submit, review_done, strict=True):
                await service.send(TENANT, a, "SUBMIT", {"priority": "low"}, event_id=f"c-{a}")
                await service.send(TENANT, b, "REVIEW_DONE", {}, event_id=f"c-{b}")

        apply, _ = await asyncio.gather(
            service.upgrades.create(
                TENANT,
                "review-flow",
                UpgradeRequest(1, 2, state_map=FULL_MAP, context_defaults=defaults, dry_run=False),
            ),
            concurrent_events(),
        )
        done = await finished(service, apply.id)
        compatible = {i for i, v in want.items() if v == "compatible"}
        assert (done.moved, done.skipped, done.pending) == (len(compatible), 0, 0)
        async with service.pool.acquire() as connection:
            rows = await connection.fetch(
                "SELECT id, definition_id FROM workflow_instances WHERE id = ANY($1)", ids
            )
            moves = await connection.fetch(
                "SELECT instance_id, payload, handled FROM workflow_events"
                " WHERE type = 'xstate.upgrade'"
            )
            tasks = await connection.fetch(
                "SELECT instance_id, name, status FROM tasks WHERE name = 'archive-task'"
            )
        assert {r["id"] for r in rows if r["definition_id"] == v2.id} == compatible
        assert {r["id"] for r in rows if r["definition_id"] == v1.id} == set(ids) - compatible
        # Every move is one audit entry, with the versions, the map and the verdict.
        assert sorted(r["instance_id"] for r in moves) == sorted(compatible)
        for r in moves:
            assert r["handled"]
            assert r["payload"]["fromVersion"] == 1
            assert r["payload"]["toVersion"] == 2
            assert r["payload"]["stateMap"] == FULL_MAP
            assert r["payload"]["verdict"] == "compatible"
        # Open tasks of the removed state are cancelled.
        assert {r["instance_id"] for r in tasks} == set(archived)
        assert {r["status"] for r in tasks} == {"cancelled"}

        # Nothing the concurrent events carried was lost, whichever side of the move.
        expected_now = {i: PATHS[p][0] for i, p in path_of.items()}
        expected_now.update({i: "legal_review" for i in compatible if path_of[i] == 1})
        expected_now.update(dict.fromkeys(archived, "approved"))
        expected_now.update(dict.fromkeys(submit, "legal_review"))
        expected_now.update(dict.fromkeys(review_done, "approved"))
        await settle(service, expected_now)
        for instance in submit + review_done:
            history = await service.history(TENANT, instance)
            assert [e["event_id"] for e in history].count(f"c-{instance}") == 1

        # A late completion of a cancelled archive task is recorded, unhandled.
        late = archived[0]
        await service.send(TENANT, late, "ARCHIVED", {}, event_id=f"late-{late}")

        async def recorded() -> bool:
            history = await service.history(TENANT, late)
            return any(e["event_id"] == f"late-{late}" for e in history)

        await wait_until(recorded, "the late completion")
        entry = next(
            e for e in await service.history(TENANT, late) if e["event_id"] == f"late-{late}"
        )
        assert not entry["handled"]
        assert entry["state_after"] == "approved"

        # The moved instances finish on v2.
        finish = {
            "intake": [("SKIP", {}), ("FINISH", {})],
            "legal_review": [("REVIEW_DONE", {}), ("FINISH", {})],
            "approved": [("FINISH", {})],
        }
        current = await states(service, sorted(compatible))
        for step in range(2):
            for instance, value in current.items():
                if step < len(finish[value]):
                    event, payload = finish[value][step]
                    await service.send(TENANT, instance, event, payload)
        await settle(service, dict.fromkeys(compatible, "closed"))

        # force also moves the diverged ones (here: exactly those), never the others.
        forced = await service.upgrades.create(
            TENANT,
            "review-flow",
            UpgradeRequest(
                1, 2, state_map=FULL_MAP, context_defaults=defaults, dry_run=False, force=True
            ),
        )
        assert forced.status == "planning"  # an apply is a job: planned in the background
        done = await finished(service, forced.id)
        assert done.counts["diverged"] == N // 5
        assert done.total == N // 5
        assert done.moved == N // 5
        diverged = [i for i, p in path_of.items() if p == 2]
        await settle(service, dict.fromkeys(diverged, "legal_review"))


def timer_spec(delay: str, waiting: str) -> dict[str, Any]:
    return {
        "id": "reminder",
        "initial": "start",
        "states": {
            "start": {"on": {"WORKFLOW_START": {"target": waiting}}},
            waiting: {"after": {delay: {"target": "late"}}, "on": {"REPLY": {"target": "done"}}},
            "late": {"on": {"REPLY": {"target": "done"}}},
            "done": {"type": "final"},
        },
    }


async def test_a_move_rearms_a_timer_whose_delay_changed(database_dsn: str) -> None:
    async with running_engine(database_dsn, HandlerRegistry()) as running:
        service = running.service
        v1 = await service.deploy(TENANT, timer_spec("60000", "waiting"))
        await service.deploy(TENANT, timer_spec("120000", "waiting_reply"))
        (started,) = await service.runtime.start_many(TENANT, v1.id, [StartRequest({})])
        instance = started.instance_id
        await settle(service, {instance: "waiting"})
        request = UpgradeRequest(1, 2, state_map={"waiting": "waiting_reply"}, dry_run=False)
        report = await service.upgrades.create(TENANT, "reminder", request)
        done = await finished(service, report.id)
        assert done.moved == 1
        (item,) = (await service.upgrades.get(TENANT, report.id)).items
        assert [t["action"] for t in item.detail["tasks"]] == ["rearmed"]
        timers = await service.tasks(TENANT, instance)
        by_status = {t["status"]: t for t in timers}
        assert set(by_status) == {"cancelled", "pending"}
        old, new = by_status["cancelled"], by_status["pending"]
        assert old["name"] == "xstate.after.60000.reminder.waiting"
        assert new["name"] == "xstate.after.120000.reminder.waiting_reply"
        assert new["run_at"] == old["created_at"] + timedelta(milliseconds=120_000)
        # The instance goes on on v2: its new state takes REPLY.
        await service.send(TENANT, instance, "REPLY")
        await settle(service, {instance: "done"})


def slow_spec(with_archive: bool) -> dict[str, Any]:
    """v1 archives with a handler task (SLOW); v2 has no archive: SKIP goes to approved."""
    job = {
        "type": "createTask",
        "task": {"type": "SLOW", "name": "archive-job", "input": {}, "completionEvent": "ARCHIVED"},
    }
    states: dict[str, Any] = {
        "start": {"on": {"WORKFLOW_START": {"target": "intake"}}},
        "intake": {"on": {"SKIP": {"target": "archive", "actions": [job]}}},
        "archive": {"on": {"ARCHIVED": {"target": "closed"}}},
        "approved": {"on": {"FINISH": {"target": "closed"}}},
        "closed": {"type": "final"},
    }
    if not with_archive:
        del states["archive"]
        states["intake"] = {"on": {"SKIP": {"target": "approved"}}}
    return {"id": "archiver", "initial": "start", "states": states}


async def test_a_handler_that_finishes_after_its_task_was_cancelled_is_recorded_ignored(
    database_dsn: str,
) -> None:
    started_jobs: list[str] = []
    release = asyncio.Event()

    async def slow(task: TaskContext) -> Any:
        started_jobs.append(task.task_id)
        await release.wait()
        return {"archived": True}

    registry = HandlerRegistry()
    registry.register("SLOW", slow)
    async with running_engine(database_dsn, registry) as running:
        service = running.service
        v1 = await service.deploy(TENANT, slow_spec(True))
        await service.deploy(TENANT, slow_spec(False))
        started = await service.runtime.start_many(TENANT, v1.id, [StartRequest({})] * 3)
        ids = [s.instance_id for s in started]
        await settle(service, dict.fromkeys(ids, "intake"))
        for instance in ids:
            await service.send(TENANT, instance, "SKIP")

        async def running_handlers() -> bool:
            return len(started_jobs) == len(ids)

        await wait_until(running_handlers, "the handlers to start")
        request = UpgradeRequest(1, 2, state_map={"archive": "approved"}, dry_run=False)
        report = await finished(
            service, (await service.upgrades.create(TENANT, "archiver", request)).id
        )
        assert report.moved == len(ids)
        for instance in ids:
            (task,) = await service.tasks(TENANT, instance)
            assert task["status"] == "cancelled"
        release.set()

        async def all_recorded() -> bool:
            for instance in ids:
                history = await service.history(TENANT, instance)
                if not any(e["type"] == "ARCHIVED" for e in history):
                    return False
            return True

        await wait_until(all_recorded, "the late completions in the histories")
        for instance in ids:
            (task,) = await service.tasks(TENANT, instance)
            late = [e for e in await service.history(TENANT, instance) if e["type"] == "ARCHIVED"]
            assert [e["event_id"] for e in late] == [f"task-{task['id']}-done"]
            assert not late[0]["handled"]
            assert late[0]["state_after"] == "approved"
            assert late[0]["payload"] == {"archived": True}
            assert task["status"] == "cancelled"
        await settle(service, dict.fromkeys(ids, "approved"))
        # The instances go on on v2.
        for instance in ids:
            await service.send(TENANT, instance, "FINISH")
        await settle(service, dict.fromkeys(ids, "closed"))
