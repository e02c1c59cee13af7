"""The durable runtime against real Postgres, a real SMTP server and the memory queue."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import pathlib
import time
import uuid
from typing import Any

import pytest
from runtime_support import FAST, running_engine, smtp_server, wait_for

from statefleet.drivers.memory import MemoryBackend, MemoryQueue
from statefleet.engine.handlers import Emit, HandlerRegistry, HandlerResult, TaskContext
from statefleet.engine.ports.queue import EventJobData
from statefleet.engine.runtime import (
    InstanceNotFound,
    InstanceNotRunning,
    InstanceRuntime,
    Publisher,
    StartRequest,
    TaskNotCompletable,
    UnknownDefinitionKey,
    WorkflowService,
)
from statefleet.engine.runtime.checkpoints import RecentCheckpoints
from statefleet.engine.store.db import create_pool

HERE = pathlib.Path(__file__).parent
HELLO = json.loads((HERE.parent / "fixtures" / "hello-workflow.json").read_text())
TENANT = "acme"

COUNTER: dict[str, Any] = {
    "id": "counter",
    "initial": "counting",
    "context": {"n": 0},
    "states": {
        "counting": {
            "on": {
                "INC": {
                    "actions": [
                        {"type": "assign", "path": "n", "value": {"$expr": "context.n + 1"}}
                    ]
                }
            }
        }
    },
}


def retrying_spec(failure_event: bool, attempts: int) -> dict[str, Any]:
    task: dict[str, Any] = {
        "type": "FLAKY",
        "name": "flaky",
        "input": {"x": 1},
        "completionEvent": "OK",
        "retry": {"maxAttempts": attempts, "backoff": {"type": "fixed", "delay": 20}},
    }
    if failure_event:
        task["failureEvent"] = "GAVE_UP"
    return {
        "id": "retry",
        "initial": "working",
        "states": {
            "working": {
                "entry": [{"type": "createTask", "task": task}],
                "on": {
                    "OK": "succeeded",
                    "GAVE_UP": {
                        "target": "gave_up",
                        "actions": [
                            {
                                "type": "assign",
                                "path": "error",
                                "value": {"$expr": "event.payload.error"},
                            }
                        ],
                    },
                },
            },
            "succeeded": {"type": "final"},
            "gave_up": {"type": "final"},
        },
    }


def registry_with(**handlers: Any) -> HandlerRegistry:
    registry = HandlerRegistry()
    for name, handler in handlers.items():
        registry.register(name, handler)
    return registry


async def test_hello_workflow_runs_end_to_end_and_its_audit_log_shows_every_step(
    database_dsn: str,
) -> None:
    with smtp_server() as (inbox, smtp):
        registry = HandlerRegistry.with_builtins(smtp, entry_points_group=None)
        async with running_engine(database_dsn, registry) as engine:
            definition = await engine.service.deploy(TENANT, HELLO)
            started = await engine.service.start(TENANT, "hello-workflow", {"greeted": False})
            view = await wait_for(engine.service, TENANT, started.instance_id)
            history = await engine.service.history(TENANT, started.instance_id)
            tasks = await engine.service.tasks(TENANT, started.instance_id)

    assert definition.version == 1
    assert (view.status, view.value, view.output) == ("done", "done", {"greeted": False})
    assert [(h["seq"], h["type"], h["state_after"]) for h in history] == [
        (0, "xstate.init", "start"),
        (1, "WORKFLOW_START", "notify"),
        (2, "HELLO_SENT", "done"),
    ]
    assert history[1]["effects"][0]["task"]["name"] == "send-hello"
    assert history[2]["payload"]["accepted"] == ["user@example.com"]
    (task,) = tasks
    assert (task["type"], task["status"], task["attempts"]) == ("EMAIL", "succeeded", 1)
    (message,) = inbox.messages
    assert (message["To"], message["Subject"]) == ("user@example.com", "Hello")
    assert message["Message-ID"] == task["output"]["messageId"]


async def test_the_same_event_delivered_twice_is_applied_once(database_dsn: str) -> None:
    pool = await create_pool(database_dsn)
    queue = MemoryQueue(MemoryBackend())
    try:
        runtime = InstanceRuntime(pool, Publisher(pool, queue))
        service = WorkflowService(pool, runtime)
        await service.deploy(TENANT, COUNTER)
        started = await service.start(TENANT, "counter", start_event=None)
        event = EventJobData(TENANT, str(started.instance_id), "inc-1", "INC", {})

        first = await runtime.apply([event])
        again = await runtime.apply([event, event])
        view = await service.get(TENANT, started.instance_id)
        history = await service.history(TENANT, started.instance_id)
    finally:
        await queue.close()
        await pool.close()

    assert [o.outcome for o in first] == ["applied"]
    assert [o.outcome for o in again] == ["duplicate", "duplicate"]
    assert view.context == {"n": 1}
    assert [h["event_id"] for h in history] == ["xstate.init", "inc-1"]


@pytest.mark.parametrize("cached", [False, True], ids=["reading", "cached-checkpoints"])
async def test_two_engines_on_one_instance_never_both_apply_a_step(
    database_dsn: str, cached: bool
) -> None:
    """With caches, each engine's copy is overtaken by the other's steps all the time:
    every stale copy must lose its version check and be re-read, never written."""
    pools = [await create_pool(database_dsn, max_size=4) for _ in range(2)]
    queue = MemoryQueue(MemoryBackend())
    try:
        runtimes = [
            InstanceRuntime(
                pool, Publisher(pool, queue), checkpoints=RecentCheckpoints() if cached else None
            )
            for pool in pools
        ]
        service = WorkflowService(pools[0], runtimes[0])
        await service.deploy(TENANT, COUNTER)
        started = await service.start(TENANT, "counter", start_event=None)
        events = [
            EventJobData(TENANT, str(started.instance_id), f"inc-{i}", "INC", {}) for i in range(40)
        ]

        async def drive(runtime: InstanceRuntime, order: list[EventJobData]) -> list[str]:
            applied = []
            for event in order:
                (outcome,) = await runtime.apply([event])
                if outcome.outcome == "applied":
                    applied.append(event.event_id)
            return applied

        first, second = await asyncio.gather(
            drive(runtimes[0], events), drive(runtimes[1], list(reversed(events)))
        )
        view = await service.get(TENANT, started.instance_id)
        history = await service.history(TENANT, started.instance_id)
    finally:
        await queue.close()
        for pool in pools:
            await pool.close()

    assert sorted(first + second) == sorted(e.event_id for e in events)
    assert not set(first) & set(second)
    assert view.context == {"n": 40}
    assert [h["seq"] for h in history] == list(range(41))


async def test_retries_back_off_then_send_the_failure_event(database_dsn: str) -> None:
    calls: list[float] = []

    async def flaky(task: TaskContext) -> Any:
        calls.append(time.monotonic())
        raise RuntimeError(f"boom on attempt {task.attempt}")

    async with running_engine(database_dsn, registry_with(FLAKY=flaky)) as engine:
        await engine.service.deploy(TENANT, retrying_spec(failure_event=True, attempts=3))
        started = await engine.service.start(TENANT, "retry")
        view = await wait_for(engine.service, TENANT, started.instance_id)
        (task,) = await engine.service.tasks(TENANT, started.instance_id)
        history = await engine.service.history(TENANT, started.instance_id)

    assert len(calls) == 3
    # Fixed 20 ms backoff with equal jitter: every pause is at least 10 ms.
    assert all(later - earlier >= 0.009 for earlier, later in itertools.pairwise(calls))
    assert (task["status"], task["attempts"]) == ("failed", 3)
    assert "boom on attempt 3" in task["last_error"]
    assert (view.status, view.value) == ("done", "gave_up")
    assert "boom on attempt 3" in view.context["error"]
    assert history[-1]["type"] == "GAVE_UP"
    assert history[-1]["payload"]["attempts"] == 3


async def test_a_final_failure_without_failure_event_fails_the_instance(database_dsn: str) -> None:
    async def broken(task: TaskContext) -> Any:
        raise RuntimeError("upstream down")

    async with running_engine(database_dsn, registry_with(FLAKY=broken)) as engine:
        await engine.service.deploy(TENANT, retrying_spec(failure_event=False, attempts=2))
        started = await engine.service.start(TENANT, "retry")
        view = await wait_for(engine.service, TENANT, started.instance_id)
        history = await engine.service.history(TENANT, started.instance_id)
        with pytest.raises(InstanceNotRunning):
            await engine.service.send(TENANT, started.instance_id, "OK")

    assert view.status == "failed"
    assert "task 'flaky' (FLAKY) failed" in (view.error or "")
    assert "upstream down" in (view.error or "")
    assert history[-1]["type"] == "statefleet.task.failed"


async def test_a_handler_that_succeeds_after_a_failure_completes_the_task(
    database_dsn: str,
) -> None:
    attempts: list[int] = []

    async def second_time_lucky(task: TaskContext) -> Any:
        attempts.append(task.attempt)
        if task.attempt == 1:
            raise RuntimeError("transient")
        return {"ok": True}

    async with running_engine(database_dsn, registry_with(FLAKY=second_time_lucky)) as engine:
        await engine.service.deploy(TENANT, retrying_spec(failure_event=True, attempts=3))
        started = await engine.service.start(TENANT, "retry")
        view = await wait_for(engine.service, TENANT, started.instance_id)

    assert attempts == [1, 2]
    assert view.value == "succeeded"


async def test_after_timers_survive_a_restart(database_dsn: str) -> None:
    spec = {
        "id": "timer",
        "initial": "waiting",
        "states": {"waiting": {"after": {"300": "late"}}, "late": {"type": "final"}},
    }
    registry = HandlerRegistry()
    async with running_engine(database_dsn, registry) as first:
        await first.service.deploy(TENANT, spec)
        started = await first.service.start(TENANT, "timer")
        (timer,) = await first.service.tasks(TENANT, started.instance_id)
        assert (timer["kind"], timer["status"]) == ("timer", "pending")
    # The first engine's queue, with the delayed timer job in it, is gone.
    async with running_engine(database_dsn, registry, backend=MemoryBackend()) as second:
        view = await wait_for(second.service, TENANT, started.instance_id)
        history = await second.service.history(TENANT, started.instance_id)

    assert (view.status, view.value) == ("done", "late")
    assert history[0]["effects"] == [
        {"type": "scheduleTimer", "event": "xstate.after.300.timer.waiting", "delay": 300}
    ]
    assert [h["type"] for h in history][-1] == "xstate.after.300.timer.waiting"


APPROVAL: dict[str, Any] = {
    "id": "approval",
    "initial": "waiting",
    "states": {
        "waiting": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {
                        "type": "HUMAN",
                        "name": "approve",
                        "input": {"question": "ship it?"},
                        "completionEvent": "DECIDED",
                    },
                }
            ],
            "on": {
                "DECIDED": [
                    {"target": "approved", "guard": {"expr": "event.payload.approved == true"}},
                    {"target": "rejected"},
                ]
            },
        },
        "approved": {"type": "final"},
        "rejected": {"type": "final"},
    },
}


async def test_a_human_task_waits_until_completed_from_outside(database_dsn: str) -> None:
    async with running_engine(database_dsn, HandlerRegistry()) as engine:
        await engine.service.deploy(TENANT, APPROVAL)
        started = await engine.service.start(TENANT, "approval")
        (task,) = await engine.service.tasks(TENANT, started.instance_id)
        await engine.engine.sweeper.sweep_once()  # a sweep never runs a manual task
        assert (await engine.service.tasks(TENANT, started.instance_id))[0]["status"] == "pending"

        await engine.service.complete_task(TENANT, task["id"], {"approved": True})
        view = await wait_for(engine.service, TENANT, started.instance_id)
        with pytest.raises(TaskNotCompletable):
            await engine.service.complete_task(TENANT, task["id"], {"approved": False})

    assert view.value == "approved"


async def test_starting_twice_with_one_key_returns_the_same_instance(database_dsn: str) -> None:
    async with running_engine(database_dsn, HandlerRegistry()) as engine:
        await engine.service.deploy(TENANT, COUNTER)
        first = await engine.service.start(TENANT, "counter", idempotency_key="order-42")
        again = await engine.service.start(TENANT, "counter", idempotency_key="order-42")
        batch = await engine.service.start_many(
            TENANT,
            "counter",
            [StartRequest({"n": 5}, "order-42"), StartRequest({"n": 7}, "order-43")],
        )

    assert (first.created, again.created) == (True, False)
    assert again.instance_id == first.instance_id
    assert batch[0].instance_id == first.instance_id
    assert not batch[0].created
    assert batch[1].created
    assert batch[1].instance_id != first.instance_id


async def test_deploying_the_same_spec_keeps_its_version_and_a_change_gets_the_next(
    database_dsn: str,
) -> None:
    async with running_engine(database_dsn, HandlerRegistry(), start=False) as engine:
        one = await engine.service.deploy(TENANT, COUNTER)
        same = await engine.service.deploy(TENANT, json.loads(json.dumps(COUNTER)))
        changed = await engine.service.deploy(TENANT, {**COUNTER, "context": {"n": 1}})
        other_tenant = await engine.service.deploy("globex", COUNTER)
        old = await engine.service.start(TENANT, "counter", version=1, start_event=None)
        new = await engine.service.start(TENANT, "counter", start_event=None)
        old_view = await engine.service.get(TENANT, old.instance_id)
        new_view = await engine.service.get(TENANT, new.instance_id)
        with pytest.raises(UnknownDefinitionKey):
            await engine.service.start(TENANT, "counter", version=9)

    assert (one.version, same.version, changed.version, other_tenant.version) == (1, 1, 2, 1)
    assert (one.created, same.created, changed.created) == (True, False, True)
    assert (old_view.definition_version, old_view.context) == (1, {"n": 0})
    assert (new_view.definition_version, new_view.context) == (2, {"n": 1})


async def test_a_tenant_never_sees_another_tenants_definitions_instances_or_tasks(
    database_dsn: str,
) -> None:
    async with running_engine(database_dsn, HandlerRegistry()) as engine:
        service = engine.service
        await service.deploy(TENANT, APPROVAL)
        started = await service.start(TENANT, "approval")
        (task,) = await service.tasks(TENANT, started.instance_id)
        other = "globex"

        with pytest.raises(UnknownDefinitionKey):
            await service.definition(other, "approval")
        for call in (
            service.get(other, started.instance_id),
            service.history(other, started.instance_id),
            service.tasks(other, started.instance_id),
            service.send(other, started.instance_id, "DECIDED", {"approved": True}),
        ):
            with pytest.raises(InstanceNotFound):
                await call
        with pytest.raises(TaskNotCompletable):
            await service.complete_task(other, task["id"], {"approved": True})
        (outcome,) = await engine.engine.runtime.apply(
            [EventJobData(other, str(started.instance_id), "x-1", "DECIDED", {"approved": True})]
        )
        view = await service.get(TENANT, started.instance_id)

    assert outcome.outcome == "unknown_instance"
    assert (view.status, view.value) == ("running", "waiting")


async def test_unknown_instance_ids_are_reported_not_raised(database_dsn: str) -> None:
    async with running_engine(database_dsn, HandlerRegistry(), start=False) as engine:
        outcomes = await engine.engine.runtime.apply(
            [
                EventJobData(TENANT, str(uuid.uuid4()), "e-1", "X", {}),
                EventJobData(TENANT, "not-a-uuid", "e-2", "X", {}),
            ]
        )
    assert [o.outcome for o in outcomes] == ["unknown_instance", "unknown_instance"]


async def test_an_event_whose_publish_was_lost_is_delivered_by_the_sweeper(
    database_dsn: str,
) -> None:
    async with running_engine(database_dsn, HandlerRegistry()) as engine:
        await engine.service.deploy(TENANT, COUNTER)
        started = await engine.service.start(TENANT, "counter", start_event=None)
        # A front door whose queue is gone: the event commits to the outbox, the publish fails.
        broken_queue = MemoryQueue(MemoryBackend())
        await broken_queue.close()
        broken = WorkflowService(
            engine.pool, InstanceRuntime(engine.pool, Publisher(engine.pool, broken_queue))
        )
        event_id = await broken.send(TENANT, started.instance_id, "INC")
        view = await wait_for(
            engine.service, TENANT, started.instance_id, lambda v: v.context == {"n": 1}
        )
        history = await engine.service.history(TENANT, started.instance_id)

    assert view.status == "running"
    assert [h["event_id"] for h in history] == ["xstate.init", event_id]


#: Counts INC events, and notes whether its start came first.
STARTED_COUNTER: dict[str, Any] = {
    "id": "started-counter",
    "initial": "counting",
    "context": {"n": 0, "started": False},
    "states": {
        "counting": {
            "on": {
                "WORKFLOW_START": {
                    "actions": [{"type": "assign", "path": "started", "value": True}]
                },
                "INC": {
                    "guard": {"expr": "context.started == true"},
                    "actions": [
                        {"type": "assign", "path": "n", "value": {"$expr": "context.n + 1"}}
                    ],
                },
            }
        }
    },
}


async def test_an_interactive_start_is_applied_as_its_instance_is_created(
    database_dsn: str,
) -> None:
    """The start step commits with the instance: no job, no outbox row, no shard."""
    async with running_engine(database_dsn, HandlerRegistry()) as engine:
        await engine.service.deploy(TENANT, STARTED_COUNTER)
        # A front door whose queue is gone: nothing it publishes could arrive.
        broken_queue = MemoryQueue(MemoryBackend())
        await broken_queue.close()
        broken = WorkflowService(
            engine.pool, InstanceRuntime(engine.pool, Publisher(engine.pool, broken_queue))
        )
        started = await broken.start(TENANT, "started-counter")
        view = await engine.service.get(TENANT, started.instance_id)
        history = await engine.service.history(TENANT, started.instance_id)
        async with engine.pool.acquire() as connection:
            outbox_rows = await connection.fetchval(
                "SELECT count(*) FROM outbox WHERE instance_id = $1", started.instance_id
            )

    assert started.status == "running"
    assert view.context == {"n": 0, "started": True}
    assert [h["event_id"] for h in history] == ["xstate.init", f"start-{started.instance_id}"]
    assert [h["seq"] for h in history] == [0, 1]
    assert outbox_rows == 0


async def test_a_start_answers_with_the_status_its_start_step_left(database_dsn: str) -> None:
    quick = {
        "id": "quick",
        "initial": "idle",
        "states": {
            "idle": {"on": {"WORKFLOW_START": "over"}},
            "over": {"type": "final", "output": {"ok": True}},
        },
    }
    broken = {
        "id": "broken",
        "initial": "idle",
        "states": {
            "idle": {
                "on": {
                    "WORKFLOW_START": {
                        "actions": [{"type": "assign", "path": "x", "value": {"$expr": "1 / 0"}}]
                    }
                }
            }
        },
    }
    async with running_engine(database_dsn, HandlerRegistry(), start=False) as engine:
        await engine.service.deploy(TENANT, quick)
        await engine.service.deploy(TENANT, broken)
        done = await engine.service.start(TENANT, "quick")
        failed = await engine.service.start(TENANT, "broken")
        held = await engine.service.start(TENANT, "quick", priority=5)
        done_view = await engine.service.get(TENANT, done.instance_id)
        failed_view = await engine.service.get(TENANT, failed.instance_id)

    assert (done.status, done_view.status, done_view.output) == ("done", "done", {"ok": True})
    assert (failed.status, failed_view.status) == ("failed", "failed")
    assert failed_view.error is not None
    assert held.status == "running"  # its start waits for the admitter


async def test_a_start_job_that_arrives_after_the_start_is_a_duplicate(
    database_dsn: str,
) -> None:
    # A start job can still reach a shard: a row an earlier version left waiting moved to
    # the outbox (migration 0017). The instance applied its start already: a duplicate.
    async with running_engine(database_dsn, HandlerRegistry(), start=False) as engine:
        await engine.service.deploy(TENANT, STARTED_COUNTER)
        # The engine loop is not running: only the creating transaction applies anything.
        started = await engine.service.start(TENANT, "started-counter")
        runtime = engine.engine.runtime
        (event,) = await runtime.apply(
            [EventJobData(TENANT, str(started.instance_id), "e-1", "INC", {})]
        )
        start_id = f"start-{started.instance_id}"
        (late_start,) = await runtime.apply(
            [EventJobData(TENANT, str(started.instance_id), start_id, "WORKFLOW_START", {})]
        )
        view = await engine.service.get(TENANT, started.instance_id)
        history = await engine.service.history(TENANT, started.instance_id)

    assert (event.outcome, late_start.outcome) == ("applied", "duplicate")
    assert [h["event_id"] for h in history] == ["xstate.init", start_id, "e-1"]
    assert view.context == {"n": 1, "started": True}


async def test_an_event_the_engine_delivered_itself_leaves_no_outbox_row(
    database_dsn: str,
) -> None:
    """The direct path deletes a completion's row once applied; a sent event's row stays."""

    async def sent(task: TaskContext) -> Any:
        return {"sent": True}

    async with running_engine(database_dsn, registry_with(EMAIL=sent)) as engine:
        await engine.service.deploy(TENANT, HELLO)
        await engine.service.deploy(TENANT, STARTED_COUNTER)
        hello = await engine.service.start(TENANT, "hello-workflow")
        counter = await engine.service.start(TENANT, "started-counter")
        event_id = await engine.service.send(TENANT, counter.instance_id, "INC")
        await wait_for(engine.service, TENANT, hello.instance_id)
        await wait_for(engine.service, TENANT, counter.instance_id, lambda v: v.context["n"])

        async def outbox_of(instance_id: uuid.UUID) -> list[tuple[str, bool]]:
            async with engine.pool.acquire() as connection:
                rows = await connection.fetch(
                    "SELECT dedupe_key, published_at IS NOT NULL AS published FROM outbox"
                    " WHERE instance_id = $1",
                    instance_id,
                )
            return [(r["dedupe_key"], r["published"]) for r in rows]

        # The row goes right after its commit, in a group of deletes: wait for that.
        deadline = time.monotonic() + 20
        while (left := await outbox_of(hello.instance_id)) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        history = await engine.service.history(TENANT, hello.instance_id)
        kept = await outbox_of(counter.instance_id)

    assert [h["type"] for h in history] == ["xstate.init", "WORKFLOW_START", "HELLO_SENT"]
    assert left == []
    assert kept == [(event_id, True)]


async def test_a_held_start_waits_in_the_outbox_unapplied(database_dsn: str) -> None:
    async with running_engine(database_dsn, HandlerRegistry(), start=False) as engine:
        await engine.service.deploy(TENANT, STARTED_COUNTER)
        started = await engine.service.start(TENANT, "started-counter", priority=5)
        async with engine.pool.acquire() as connection:
            held = await connection.fetch(
                "SELECT dedupe_key, held FROM outbox WHERE instance_id = $1",
                started.instance_id,
            )
        view = await engine.service.get(TENANT, started.instance_id)
        history = await engine.service.history(TENANT, started.instance_id)

    assert [(r["dedupe_key"], r["held"]) for r in held] == [(f"start-{started.instance_id}", True)]
    assert view.context == {"n": 0, "started": False}
    assert [h["event_id"] for h in history] == ["xstate.init"]


async def test_a_handler_can_emit_events_into_its_instance_with_its_success(
    database_dsn: str,
) -> None:
    spec = {
        "id": "emitter",
        "initial": "asking",
        "context": {},
        "states": {
            "asking": {
                "entry": [
                    {
                        "type": "createTask",
                        "task": {"type": "DECIDE", "name": "decide", "input": {}},
                    }
                ],
                "on": {
                    "ROUTE": {
                        "target": "routed",
                        "actions": [
                            {"type": "assign", "path": "to", "value": {"$expr": "event.payload.to"}}
                        ],
                    }
                },
            },
            "routed": {"type": "final"},
        },
    }

    async def decide(task: TaskContext) -> Any:
        return HandlerResult({"decided": True}, emit=(Emit("ROUTE", {"to": "billing"}),))

    async with running_engine(database_dsn, registry_with(DECIDE=decide)) as engine:
        await engine.service.deploy(TENANT, spec)
        started = await engine.service.start(TENANT, "emitter")
        view = await wait_for(engine.service, TENANT, started.instance_id)
        (task,) = await engine.service.tasks(TENANT, started.instance_id)

    assert (view.value, view.context) == ("routed", {"to": "billing"})
    assert task["output"] == {"decided": True}


async def test_an_event_the_broker_lost_after_publishing_is_sent_again(
    database_dsn: str,
) -> None:
    # The first engine publishes the event to a queue nobody consumes, then vanishes
    # with it: the outbox row is marked published, yet the event was never applied.
    async with running_engine(database_dsn, HandlerRegistry(), start=False) as first:
        await first.service.deploy(TENANT, COUNTER)
        started = await first.service.start(TENANT, "counter", start_event=None)
        event_id = await first.service.send(TENANT, started.instance_id, "INC")
        async with first.pool.acquire() as connection:
            published = await connection.fetchval(
                "SELECT published_at IS NOT NULL FROM outbox WHERE dedupe_key = $1", event_id
            )
    assert published
    settings = dataclasses.replace(FAST, sweep_event_grace_ms=300)
    async with running_engine(
        database_dsn, HandlerRegistry(), backend=MemoryBackend(), settings=settings
    ) as second:
        view = await wait_for(
            second.service, TENANT, started.instance_id, lambda v: v.context == {"n": 1}
        )
        history = await second.service.history(TENANT, started.instance_id)

    assert [h["event_id"] for h in history] == ["xstate.init", event_id]
    assert view.status == "running"


async def test_an_initial_state_that_fails_to_evaluate_starts_a_failed_instance(
    database_dsn: str,
) -> None:
    """An error entering the initial state is a failed instance with its audit row, not a 500."""
    spec = {
        "id": "broken-start",
        "initial": "a",
        "context": {"zero": 0},
        "states": {
            "a": {
                "entry": [{"type": "assign", "path": "x", "value": {"$expr": "1 / context.zero"}}]
            }
        },
    }
    async with running_engine(database_dsn, registry_with()) as engine:
        await engine.service.deploy(TENANT, spec)
        started = await engine.service.start(TENANT, "broken-start")
        view = await engine.service.get(TENANT, started.instance_id)
        history = await engine.service.history(TENANT, started.instance_id)

    assert view.status == "failed"
    assert "divide by zero" in (view.error or "")
    assert [(h["seq"], h["type"], h["state_after"]) for h in history] == [(0, "xstate.init", None)]
