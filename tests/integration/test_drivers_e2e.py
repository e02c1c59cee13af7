"""The same end-to-end suite under every queue driver: memory, BullMQ, Cloud Tasks.

One set of tests, parametrised by the ``target`` fixture: BullMQ runs on a real
``redis-server`` and Cloud Tasks on the real emulator, which pushes HTTP to the app's
``/internal/queues/*`` routes served by uvicorn (see ``driver_support``). Plus a
BullMQ-only test: Redis restarted mid-run loses nothing.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import e2e_handlers
import pytest
from cloudtasks_emulator import emulator_for_tests
from driver_support import DRIVERS, DriverEngine, DriverTarget, bullmq_engine, open_engine
from e2e_handlers import Journal
from redis_server import (
    RedisServer,
    RedisUnavailable,
    redis_url_for_tests,
    running_redis,
)
from runtime_support import running_engine, smtp_server, wait_for

from statefleet.drivers.bullmq import BullMQQueue
from statefleet.drivers.cloudtasks import CloudTasksQueue
from statefleet.drivers.memory import MemoryQueue
from statefleet.engine.ports import QUEUE_NAMES, QueueJob, event_job
from statefleet.engine.runtime import StartRequest
from tests.required import unavailable

HERE = pathlib.Path(__file__).parent
HELLO = json.loads((HERE.parent / "fixtures" / "hello-workflow.json").read_text())
TENANT = "acme"
WAIT_S = 60.0  # a hang guard for a loaded machine, not a performance bound

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

TIMER: dict[str, Any] = {
    "id": "timer",
    "initial": "waiting",
    "states": {"waiting": {"after": {"300": "late"}}, "late": {"type": "final"}},
}

FLAKY: dict[str, Any] = {
    "id": "retry",
    "initial": "working",
    "states": {
        "working": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {
                        "type": "FLAKY",
                        "name": "flaky",
                        "input": {"x": 1},
                        "completionEvent": "OK",
                        "failureEvent": "GAVE_UP",
                        "retry": {"maxAttempts": 3, "backoff": {"type": "fixed", "delay": 20}},
                    },
                }
            ],
            "on": {"OK": "succeeded", "GAVE_UP": "gave_up"},
        },
        "succeeded": {"type": "final"},
        "gave_up": {"type": "final"},
    },
}


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_url_for_tests() as url:
        yield url


@pytest.fixture(scope="session")
def cloudtasks_emulator() -> Iterator[str]:
    with emulator_for_tests() as host:
        yield host


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own (never ``REDIS_URL``): the test restarts it."""
    try:
        with running_redis() as server:
            yield server
    except RedisUnavailable as error:
        unavailable("Redis", str(error))


@pytest.fixture(
    params=[(d, b) for d in DRIVERS for b in ("local", "ray")], ids=lambda p: f"{p[0]}-{p[1]}"
)
def target(request: pytest.FixtureRequest) -> DriverTarget:
    """The driver and backend under test; brokers and Ray start only when a test needs them."""
    driver, backend = request.param
    if backend == "ray":
        request.getfixturevalue("local_ray")
    if driver == "bullmq":
        return DriverTarget(
            "bullmq", redis_url=request.getfixturevalue("redis_url"), backend=backend
        )
    if driver == "cloudtasks":
        host = request.getfixturevalue("cloudtasks_emulator")
        return DriverTarget("cloudtasks", emulator_host=host, backend=backend)
    return DriverTarget("memory", backend=backend)


async def drain(engine: DriverEngine) -> None:
    """Wait until the driver holds no job of either queue: every delivery was handled."""
    queue = engine.queue
    async with asyncio.timeout(WAIT_S):
        while True:
            if isinstance(queue, MemoryQueue):
                pending = sum(queue.backend.pending(name) for name in QUEUE_NAMES)
            elif isinstance(queue, BullMQQueue):
                pending = sum([sum((await queue.counts(n)).values()) for n in QUEUE_NAMES])
            else:
                assert isinstance(queue, CloudTasksQueue)
                client = queue.client()
                pending = 0
                for name in QUEUE_NAMES:
                    listed = await client.list_tasks(parent=queue.queue_path(name))
                    pending += len([task async for task in listed])
            if pending == 0:
                return
            await asyncio.sleep(0.05)


async def test_hello_workflow_finishes_with_its_audit_log(
    target: DriverTarget, database_dsn: str
) -> None:
    with smtp_server() as (inbox, smtp):
        registry = functools.partial(e2e_handlers.hello_registry, smtp)
        async with open_engine(target, database_dsn, registry) as engine:
            await engine.service.deploy(TENANT, HELLO)
            started = await engine.service.start(TENANT, "hello-workflow", {"greeted": False})
            view = await wait_for(engine.service, TENANT, started.instance_id, timeout=WAIT_S)
            history = await engine.service.history(TENANT, started.instance_id)
            (task,) = await engine.service.tasks(TENANT, started.instance_id)

    assert (view.status, view.value, view.output) == ("done", "done", {"greeted": False})
    assert [(h["seq"], h["type"], h["state_after"]) for h in history] == [
        (0, "xstate.init", "start"),
        (1, "WORKFLOW_START", "notify"),
        (2, "HELLO_SENT", "done"),
    ]
    assert history[2]["payload"]["accepted"] == ["user@example.com"]
    assert (task["type"], task["status"], task["attempts"]) == ("EMAIL", "succeeded", 1)
    (message,) = inbox.messages
    assert message["Message-ID"] == task["output"]["messageId"]


async def test_an_after_timer_fires(target: DriverTarget, database_dsn: str) -> None:
    async with open_engine(target, database_dsn, e2e_handlers.no_handlers) as engine:
        await engine.service.deploy(TENANT, TIMER)
        began = time.monotonic()
        started = await engine.service.start(TENANT, "timer")
        view = await wait_for(engine.service, TENANT, started.instance_id, timeout=WAIT_S)
        elapsed = time.monotonic() - began
        history = await engine.service.history(TENANT, started.instance_id)

    assert (view.status, view.value) == ("done", "late")
    # The timer made the move (a start event slower than 300 ms on a loaded machine
    # arrives after it and is recorded unhandled, so it need not be the last row).
    (moved,) = [h for h in history if h["state_after"] == "late" and h["handled"]]
    assert moved["type"] == "xstate.after.300.timer.waiting"
    assert elapsed >= 0.3 - 0.005


async def test_a_flaky_task_retries_then_sends_its_failure_event(
    target: DriverTarget, database_dsn: str, tmp_path: pathlib.Path
) -> None:
    journal = Journal(tmp_path / "flaky.jsonl")
    registry = functools.partial(e2e_handlers.flaky_registry, journal.path)
    async with open_engine(target, database_dsn, registry) as engine:
        await engine.service.deploy(TENANT, FLAKY)
        started = await engine.service.start(TENANT, "retry")
        view = await wait_for(engine.service, TENANT, started.instance_id, timeout=WAIT_S)
        (task,) = await engine.service.tasks(TENANT, started.instance_id)
        history = await engine.service.history(TENANT, started.instance_id)

    calls = [(entry["attempt"], entry["at"]) for entry in journal.read()]
    assert [attempt for attempt, _ in calls] == [1, 2, 3]
    # Fixed 20 ms backoff with equal jitter: every pause is at least 10 ms.
    assert all(b - a >= 0.009 for (_, a), (_, b) in itertools.pairwise(calls))
    assert (task["status"], task["attempts"]) == ("failed", 3)
    assert "boom on attempt 3" in task["last_error"]
    assert (view.status, view.value) == ("done", "gave_up")
    assert history[-1]["type"] == "GAVE_UP"
    assert history[-1]["payload"]["attempts"] == 3


async def test_the_same_event_delivered_twice_is_applied_once(
    target: DriverTarget, database_dsn: str
) -> None:
    async with open_engine(target, database_dsn, e2e_handlers.no_handlers) as engine:
        await engine.service.deploy(TENANT, COUNTER)
        started = await engine.service.start(TENANT, "counter", start_event=None)
        instance = started.instance_id

        def inc(event_id: str) -> QueueJob:
            return event_job(
                tenant_id=TENANT, instance_id=str(instance), event_id=event_id, event_type="INC"
            )

        # Through the API twice with one event id, and on the driver itself, one by one
        # (enqueue_many would collapse the duplicate before the driver sees it).
        await engine.service.send(TENANT, instance, "INC", event_id="e1")
        await engine.service.send(TENANT, instance, "INC", event_id="e1")
        for event_id in ("e1", "e2", "e2"):
            await engine.queue.enqueue(inc(event_id))
        await wait_for(engine.service, TENANT, instance, lambda v: v.context["n"] >= 2, WAIT_S)
        await engine.queue.enqueue(inc("e1"))  # again, after it was applied
        await engine.queue.enqueue(inc("e3"))
        await wait_for(engine.service, TENANT, instance, lambda v: v.context["n"] >= 3, WAIT_S)
        await drain(engine)
        view = await engine.service.get(TENANT, instance)
        history = await engine.service.history(TENANT, instance)

    assert view.context == {"n": 3}
    # e1 and e2 race each other; e3 was sent after both were applied.
    assert [h["event_id"] for h in history][0::3] == ["xstate.init", "e3"]
    assert sorted(h["event_id"] for h in history[1:3]) == ["e1", "e2"]


LIMITED: dict[str, Any] = {
    "id": "limited",
    "initial": "working",
    "states": {
        "working": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {
                        "type": "WORK",
                        "name": "work",
                        "input": {"key": {"$expr": "context.key"}},
                        "completionEvent": "DONE",
                        "limits": {"concurrency": 2},
                    },
                }
            ],
            "on": {"DONE": "done"},
        },
        "done": {"type": "final"},
    },
}


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The largest number of (began, ended) intervals that overlap at one moment."""
    edges = sorted([(b, 1) for b, _ in intervals] + [(e, -1) for _, e in intervals])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


async def test_held_batches_and_task_limits_behave_alike(
    target: DriverTarget, database_dsn: str, tmp_path: pathlib.Path
) -> None:
    """Issue 18 under every driver: a batch is held and admitted by the engine (no driver
    feature involved), a spec limit of 2 holds across batch and interactive work."""
    journal = Journal(tmp_path / "work.jsonl")
    registry = functools.partial(e2e_handlers.interval_registry, journal.path)
    async with open_engine(target, database_dsn, registry) as engine:
        tally = engine.engine.tally
        await engine.service.deploy(TENANT, LIMITED)
        batch = await engine.service.start_batch(
            TENANT, "limited", [{"key": f"b{i}"} for i in range(10)]
        )
        singles = [
            await engine.service.start(TENANT, "limited", {"key": f"s{i}"}) for i in range(3)
        ]
        for single in singles:
            view = await wait_for(engine.service, TENANT, single.instance_id, timeout=WAIT_S)
            assert view.status == "done"
        async with asyncio.timeout(WAIT_S):
            while (await engine.service.batch_progress(TENANT, batch.batch_id)).counts["done"] < 10:
                await asyncio.sleep(0.05)
        async with engine.pool.acquire() as connection:
            held = await connection.fetchval(
                "SELECT count(*) FROM tasks WHERE tenant_id = $1 AND held", TENANT
            )
    # Read once the engine has stopped: an instance is done when its shard commits the
    # completion, inside the admitter's hand-over, which counts its tasks only after it
    # (and a stop waits for every hand-over in progress).
    admitted = tally.admitted.get("task")
    entries = journal.read()
    assert sorted(e["key"] for e in entries) == sorted(
        [f"b{i}" for i in range(10)] + [f"s{i}" for i in range(3)]
    )
    assert most_at_once([(e["began"], e["ended"]) for e in entries]) <= 2
    assert held == 13  # every task was held...
    assert admitted == 13  # ...and claimed by the admitter for a pool, none published


async def test_bullmq_loses_nothing_when_redis_restarts_mid_run(
    own_redis: RedisServer, database_dsn: str, tmp_path: pathlib.Path
) -> None:
    """Instances started before and after a Redis restart all finish.

    The restart happens with work provably in flight: some instances done, the e-mail
    tasks of the others held at a gate until Redis is back.
    """
    journal = Journal(tmp_path / "email.jsonl")
    gate = tmp_path / "gate"
    first = 10
    registry = functools.partial(e2e_handlers.gated_email_registry, journal.path, gate, first)
    server = own_redis
    async with bullmq_engine(database_dsn, registry, server.url) as engine:
        await engine.service.deploy(TENANT, HELLO)
        before = await engine.service.start_many(TENANT, "hello-workflow", _requests(40))
        succeeded = "SELECT count(*) FROM tasks WHERE status = 'succeeded'"
        try:
            deadline = time.monotonic() + WAIT_S
            while await engine.pool.fetchval(succeeded) < first or len(journal.read()) <= first:
                assert time.monotonic() < deadline, "the first e-mails never went out"
                await asyncio.sleep(0.02)
            await asyncio.to_thread(server.restart, keep_data=True)
            # Some-but-not-all work was done at the restart, and some was inside a handler.
            assert await engine.pool.fetchval(succeeded) == first < len(before)
            assert len(journal.read()) > first
        finally:
            gate.touch()  # held handlers would keep the engine from stopping
        after = await engine.service.start_many(TENANT, "hello-workflow", _requests(40))
        views = [
            await wait_for(engine.service, TENANT, started.instance_id, timeout=WAIT_S)
            for started in before + after
        ]

    assert {view.status for view in views} == {"done"}
    assert len(views) == 80
    sent = {entry["instance"] for entry in journal.read()}
    assert sent == {str(started.instance_id) for started in before + after}


def _requests(n: int) -> list[StartRequest]:
    return [StartRequest({}, f"start-{uuid.uuid4().hex}") for _ in range(n)]


SLOW: dict[str, Any] = {
    "id": "slow",
    "initial": "working",
    "states": {
        "working": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {
                        "type": "SLOW",
                        "name": "slow",
                        "input": {},
                        "completionEvent": "DONE",
                        "timeout": 600,
                    },
                }
            ],
            "on": {"DONE": "finished"},
        },
        "finished": {"type": "final"},
    },
}


async def test_a_worker_killed_mid_task_is_recovered_through_the_driver(
    target: DriverTarget, database_dsn: str, tmp_path: pathlib.Path
) -> None:
    """Crash recovery: a worker process dies holding a task's lease; once the lease
    expires the sweeper re-sends the task through this driver and it finishes once."""
    journal = Journal(tmp_path / "slow.jsonl")
    registry = functools.partial(e2e_handlers.slow_quick_registry, journal.path)
    async with running_engine(database_dsn, registry, start=False) as idle:
        await idle.service.deploy(TENANT, SLOW)
        started = await idle.service.start(TENANT, "slow")
        (task,) = await idle.service.tasks(TENANT, started.instance_id)

    with subprocess.Popen(
        [sys.executable, str(HERE / "dying_worker.py"), database_dsn, TENANT, str(task["id"])],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(HERE)},
    ) as dying:
        assert dying.stdout is not None
        claimed = dying.stdout.readline().strip()
        dying.send_signal(signal.SIGKILL)
    assert claimed == "claimed"

    async with open_engine(target, database_dsn, registry) as engine:
        view = await wait_for(engine.service, TENANT, started.instance_id, timeout=WAIT_S)
        (task,) = await engine.service.tasks(TENANT, started.instance_id)
        history = await engine.service.history(TENANT, started.instance_id)

    assert [entry["attempt"] for entry in journal.read()] == [2]
    assert (task["status"], task["attempts"]) == ("succeeded", 2)
    assert view.value == "finished"
    assert [h["type"] for h in history].count("DONE") == 1
