"""The queue port's contract, run against every driver.

Each case states one obligation from the docstrings of
:class:`statefleet.engine.ports.Queue` and :class:`~statefleet.engine.ports.Consumer`.
Drivers are listed in ``BACKENDS``: adding BullMQ or Cloud Tasks is one entry each,
an async context manager that yields a :class:`Backend` (it may skip when Redis or
the emulator is missing, and must fail instead under ``CI=true``). Tests at the end
cover what only the memory driver promises.

Timing: assertions are only ever lower bounds ("not before 200 ms") or orderings.
``HANG_GUARD_S`` turns a hang into a failure; it is not a speed requirement.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio
from redis_server import redis_url_for_tests

from statefleet.drivers import MemoryBackend, MemoryQueue
from statefleet.drivers.bullmq import BullMQQueue
from statefleet.engine.ports import (
    ORCHESTRATOR_QUEUE,
    TASK_RUNNER_QUEUE,
    Consumer,
    PartialBatchFailure,
    Queue,
    QueueClosedError,
    QueueJob,
    event_job,
    task_job,
)

pytestmark = pytest.mark.asyncio

HANG_GUARD_S = 10.0
# Timers may fire a hair early by the event loop's clock resolution, and brokers
# keep delays in milliseconds; lower bounds allow this much.
CLOCK_SLACK_S = 0.005


@dataclass
class Backend:
    """One driver under test: clients sharing one backend, and a way to wait for quiet.

    ``connect`` opens a new client of the same backend (a Redis database, a Cloud
    Tasks emulator, a :class:`MemoryBackend`); the fixture closes every client it
    opened. ``drain`` waits until a queue has nothing waiting, delayed or in flight.
    """

    name: str
    connect: Callable[[], Queue]
    drain: Callable[[str], Awaitable[None]]
    clients: list[Queue] = field(default_factory=list)
    # Waits until a queue has a job in flight; a networked driver takes a round trip
    # to pick up a job, which ``settle`` alone does not give it.
    until_taken: Callable[[str], Awaitable[None]] | None = None

    def open(self) -> Queue:
        client = self.connect()
        self.clients.append(client)
        return client


@contextlib.asynccontextmanager
async def memory_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    shared = MemoryBackend()

    def connect() -> Queue:
        return MemoryQueue(shared, min_backoff_ms=50, max_backoff_ms=100)

    observer = MemoryQueue(shared)

    async def drain(queue_name: str) -> None:
        await observer.join(queue_name, timeout=HANG_GUARD_S)

    yield Backend("memory", connect, drain)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """``REDIS_URL``, or a throwaway ``redis-server`` for the session."""
    with redis_url_for_tests() as url:
        yield url


@contextlib.asynccontextmanager
async def bullmq_backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    url: str = request.getfixturevalue("redis_url")
    prefix = f"sf-test-{uuid.uuid4().hex[:12]}"  # a fresh keyspace per test

    def connect() -> Queue:
        return BullMQQueue(url, prefix=prefix, min_backoff_ms=50)

    observer = BullMQQueue(url, prefix=prefix)

    async def drain(queue_name: str) -> None:
        async with asyncio.timeout(HANG_GUARD_S):
            while any((await observer.counts(queue_name)).values()):
                await asyncio.sleep(0.02)

    async def until_taken(queue_name: str) -> None:
        async with asyncio.timeout(HANG_GUARD_S):
            while not (await observer.counts(queue_name))["active"]:
                await asyncio.sleep(0.01)

    try:
        yield Backend("bullmq", connect, drain, until_taken=until_taken)
    finally:
        await observer.close()


BACKENDS: dict[
    str, Callable[[pytest.FixtureRequest], contextlib.AbstractAsyncContextManager[Backend]]
] = {
    "memory": memory_backend,
    "bullmq": bullmq_backend,
}


@pytest_asyncio.fixture(params=sorted(BACKENDS))
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    async with BACKENDS[request.param](request) as opened:
        try:
            yield opened
        finally:
            # Bounded, so that a failed test leaving a handler blocked fails instead of
            # hanging (a cancelled close cancels the handlers, which requeues their jobs).
            async with asyncio.timeout(HANG_GUARD_S):
                for client in opened.clients:
                    await client.close()


@pytest_asyncio.fixture
async def queue(backend: Backend) -> Queue:
    return backend.open()


class Recorder:
    """A handler that records every delivery, optionally failing or blocking some."""

    def __init__(self) -> None:
        self.jobs: list[QueueJob] = []
        self.times: list[float] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.fail_first: set[str] = set()  # event ids whose first delivery raises
        self.gate: asyncio.Event | None = None  # when set, handlers wait for it
        self._changed = asyncio.Condition()

    async def __call__(self, job: QueueJob) -> None:
        await self._record([job])
        key = _id(job)
        try:
            if self.gate is not None:
                await self.gate.wait()
            if key in self.fail_first:
                self.fail_first.discard(key)
                raise RuntimeError(f"first delivery of {key} fails")
        finally:
            await self._leave(1)

    async def batch(self, jobs: list[QueueJob]) -> None:
        await self._record(jobs)
        try:
            if self.gate is not None:
                await self.gate.wait()
        finally:
            await self._leave(1)

    async def _record(self, jobs: list[QueueJob]) -> None:
        async with self._changed:
            self.jobs.extend(jobs)
            self.times.extend(asyncio.get_running_loop().time() for _ in jobs)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self._changed.notify_all()

    async def _leave(self, count: int) -> None:
        async with self._changed:
            self.in_flight -= count
            self._changed.notify_all()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(HANG_GUARD_S), self._changed:
            await self._changed.wait_for(predicate)

    async def wait_for(self, count: int) -> None:
        await self.wait_until(lambda: len(self.jobs) >= count)

    def ids(self) -> list[str]:
        return [_id(job) for job in self.jobs]


def _id(job: QueueJob) -> str:
    if job.queue == ORCHESTRATOR_QUEUE:
        return str(job.data["event"]["id"])
    return str(job.data["taskId"])


def ev(event_id: str, run_at: datetime | None = None, **payload: Any) -> QueueJob:
    return event_job(
        tenant_id="t1",
        instance_id="i1",
        event_id=event_id,
        event_type="GO",
        payload=payload,
        run_at=run_at,
    )


def tk(task_id: str, attempt: int = 0) -> QueueJob:
    return task_job(tenant_id="t1", task_id=task_id, attempt=attempt)


async def settle() -> None:
    """Let every ready callback and task run a few rounds."""
    for _ in range(20):
        await asyncio.sleep(0)


async def consume(queue: Queue, handler: Recorder, concurrency: int = 1) -> Consumer:
    return await queue.consume(ORCHESTRATOR_QUEUE, handler, concurrency=concurrency)


# --------------------------------------------------------------------------- delivery


async def test_an_enqueued_job_is_delivered_in_its_wire_format(
    backend: Backend, queue: Queue
) -> None:
    job = ev("e1", answer=42)
    await queue.enqueue(job)
    recorder = Recorder()
    await consume(queue, recorder)
    await backend.drain(ORCHESTRATOR_QUEUE)
    (delivered,) = recorder.jobs
    assert (delivered.queue, delivered.name, delivered.data) == (job.queue, job.name, job.data)


async def test_a_consumer_receives_only_its_queues_jobs(backend: Backend, queue: Queue) -> None:
    await queue.enqueue_many([ev("e1"), tk("k1")])
    events, tasks = Recorder(), Recorder()
    await consume(queue, events)
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert events.ids() == ["e1"]
    await queue.consume(TASK_RUNNER_QUEUE, tasks, concurrency=1)
    await backend.drain(TASK_RUNNER_QUEUE)
    assert tasks.ids() == ["k1"]
    assert [job.name for job in tasks.jobs] == ["task"]


async def test_enqueue_many_delivers_hundreds_of_jobs_across_queues(
    backend: Backend, queue: Queue
) -> None:
    jobs = [ev(f"e{n}") for n in range(300)] + [tk(f"k{n}") for n in range(200)]
    await queue.enqueue_many(jobs)
    events, tasks = Recorder(), Recorder()
    await consume(queue, events, concurrency=8)
    await queue.consume(TASK_RUNNER_QUEUE, tasks, concurrency=8)
    await backend.drain(ORCHESTRATOR_QUEUE)
    await backend.drain(TASK_RUNNER_QUEUE)
    assert sorted(events.ids()) == sorted(f"e{n}" for n in range(300))
    assert sorted(tasks.ids()) == sorted(f"k{n}" for n in range(200))


async def test_jobs_enqueued_by_one_client_reach_a_consumer_of_another(backend: Backend) -> None:
    producer, worker = backend.open(), backend.open()
    recorder = Recorder()
    await consume(worker, recorder)
    await producer.enqueue(ev("e1"))
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert recorder.ids() == ["e1"]


async def test_handlers_get_their_own_copy_of_the_data(backend: Backend, queue: Queue) -> None:
    seen: list[dict[str, Any]] = []

    async def mutate_then_fail_once(job: QueueJob) -> None:
        seen.append(job.data["event"]["payload"].copy())
        job.data["event"]["payload"]["n"] = 99
        if len(seen) == 1:
            raise RuntimeError("fail the first delivery")

    job = ev("e1", n=1)
    await queue.enqueue(job)
    await queue.consume(ORCHESTRATOR_QUEUE, mutate_then_fail_once, concurrency=1)
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert seen == [{"n": 1}, {"n": 1}]
    assert job.data["event"]["payload"] == {"n": 1}


async def test_enqueue_refuses_what_cannot_travel(queue: Queue) -> None:
    with pytest.raises(ValueError, match="delay_ms"):
        await queue.enqueue(ev("e1"), delay_ms=-1)
    with pytest.raises(TypeError):
        await queue.enqueue(QueueJob(ORCHESTRATOR_QUEUE, "event", {"x": object()}))
    not_json = QueueJob(ORCHESTRATOR_QUEUE, "event", {1: 2})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        await queue.enqueue_many([ev("e2"), not_json])


# --------------------------------------------------------------------------- delays


async def test_a_delayed_job_is_not_delivered_before_its_delay(
    backend: Backend, queue: Queue
) -> None:
    recorder = Recorder()
    await consume(queue, recorder)
    start = asyncio.get_running_loop().time()
    await queue.enqueue(ev("late"), delay_ms=200)
    await queue.enqueue(ev("now"))
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert recorder.ids() == ["now", "late"]
    assert recorder.times[1] - start >= 0.2 - CLOCK_SLACK_S


async def test_run_at_is_not_before_either(backend: Backend, queue: Queue) -> None:
    delivered_at: list[datetime] = []

    async def handler(job: QueueJob) -> None:
        delivered_at.append(datetime.now(UTC))

    run_at = datetime.now(UTC) + timedelta(milliseconds=200)
    await queue.enqueue_many([ev("late", run_at=run_at)])
    await queue.consume(ORCHESTRATOR_QUEUE, handler, concurrency=1)
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert delivered_at[0] >= run_at - timedelta(seconds=CLOCK_SLACK_S)


async def test_delayed_jobs_come_due_in_order(backend: Backend, queue: Queue) -> None:
    recorder = Recorder()
    await consume(queue, recorder)
    past = datetime.now(UTC) - timedelta(hours=1)
    await queue.enqueue(ev("d300"), delay_ms=300)
    await queue.enqueue(ev("d100"), delay_ms=100)
    await queue.enqueue(ev("d200"), delay_ms=200)
    await queue.enqueue(ev("past"), delay_ms=0)
    await queue.enqueue_many([ev("overdue", run_at=past)])
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert sorted(recorder.ids()[:2]) == ["overdue", "past"]
    assert recorder.ids()[2:] == ["d100", "d200", "d300"]


async def test_the_later_of_delay_and_run_at_wins(backend: Backend, queue: Queue) -> None:
    recorder = Recorder()
    await consume(queue, recorder)
    start = asyncio.get_running_loop().time()
    soon = datetime.now(UTC) + timedelta(milliseconds=50)
    await queue.enqueue(ev("both", run_at=soon), delay_ms=250)
    await queue.enqueue(ev("marker"), delay_ms=150)
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert recorder.ids() == ["marker", "both"]
    assert recorder.times[1] - start >= 0.25 - CLOCK_SLACK_S


# --------------------------------------------------------------------------- dedupe


async def test_a_duplicate_of_a_waiting_job_is_dropped(backend: Backend, queue: Queue) -> None:
    await queue.enqueue(ev("e1", version=1))
    await queue.enqueue(ev("e1", version=2))
    await queue.enqueue_many([ev("e1", version=3), ev("e2"), ev("e2")])
    recorder = Recorder()
    await consume(queue, recorder)
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert sorted(recorder.ids()) == ["e1", "e2"]
    first = next(job for job in recorder.jobs if _id(job) == "e1")
    assert first.data["event"]["payload"] == {"version": 1}


async def test_a_duplicate_of_a_delayed_job_is_dropped_even_if_due_now(
    backend: Backend, queue: Queue
) -> None:
    recorder = Recorder()
    await consume(queue, recorder)
    start = asyncio.get_running_loop().time()
    await queue.enqueue(ev("e1", version=1), delay_ms=150)
    await queue.enqueue(ev("e1", version=2))
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert recorder.ids() == ["e1"]
    assert recorder.jobs[0].data["event"]["payload"] == {"version": 1}
    assert recorder.times[0] - start >= 0.15 - CLOCK_SLACK_S


async def test_a_duplicate_of_a_job_in_flight_is_dropped(backend: Backend, queue: Queue) -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    await consume(queue, recorder)
    await queue.enqueue(ev("e1"))
    await recorder.wait_for(1)
    await queue.enqueue(ev("e1"))
    recorder.gate.set()
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert recorder.ids() == ["e1"]


async def test_a_duplicate_of_a_job_awaiting_retry_is_dropped(
    backend: Backend, queue: Queue
) -> None:
    recorder = Recorder()
    recorder.fail_first = {"e1"}
    await consume(queue, recorder)
    await queue.enqueue(ev("e1"))
    await recorder.wait_until(lambda: len(recorder.jobs) == 1 and recorder.in_flight == 0)
    await queue.enqueue(ev("e1"))
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert recorder.ids() == ["e1", "e1"]  # the failed delivery and its one retry


async def test_jobs_without_a_dedupe_key_are_never_deduplicated(
    backend: Backend, queue: Queue
) -> None:
    job = QueueJob(TASK_RUNNER_QUEUE, "task", {"tenantId": "t1", "taskId": "k1"})
    await queue.enqueue_many([job, job])
    await queue.enqueue(job)
    recorder = Recorder()
    await queue.consume(TASK_RUNNER_QUEUE, recorder, concurrency=1)
    await backend.drain(TASK_RUNNER_QUEUE)
    assert recorder.ids() == ["k1", "k1", "k1"]


async def test_dedupe_keys_are_per_queue(backend: Backend, queue: Queue) -> None:
    task = QueueJob(TASK_RUNNER_QUEUE, "task", {"tenantId": "t1", "taskId": "k1"}, "same")
    event = QueueJob(ORCHESTRATOR_QUEUE, "event", ev("e1").data, "same")
    await queue.enqueue_many([task, event])
    events, tasks = Recorder(), Recorder()
    await consume(queue, events)
    await queue.consume(TASK_RUNNER_QUEUE, tasks, concurrency=1)
    await backend.drain(ORCHESTRATOR_QUEUE)
    await backend.drain(TASK_RUNNER_QUEUE)
    assert (events.ids(), tasks.ids()) == (["e1"], ["k1"])


async def test_each_task_attempt_is_its_own_job(backend: Backend, queue: Queue) -> None:
    await queue.enqueue_many([tk("k1", attempt=1), tk("k1", attempt=2), tk("k1", attempt=1)])
    recorder = Recorder()
    await queue.consume(TASK_RUNNER_QUEUE, recorder, concurrency=1)
    await backend.drain(TASK_RUNNER_QUEUE)
    assert recorder.ids() == ["k1", "k1"]


# --------------------------------------------------------------------------- consumers


async def test_concurrency_limits_the_handlers_in_flight(backend: Backend, queue: Queue) -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    await queue.enqueue_many([ev(f"e{n}") for n in range(20)])
    await consume(queue, recorder, concurrency=3)
    await recorder.wait_until(lambda: recorder.in_flight >= 3)
    await asyncio.sleep(0.05)  # room for a fourth handler to start, were the limit broken
    assert recorder.max_in_flight == 3
    recorder.gate.set()
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert recorder.max_in_flight == 3
    assert len(recorder.ids()) == 20


async def test_consumers_of_one_queue_share_its_jobs(backend: Backend, queue: Queue) -> None:
    first, second = Recorder(), Recorder()
    await consume(queue, first, concurrency=2)
    await consume(backend.open(), second, concurrency=2)
    await queue.enqueue_many([ev(f"e{n}") for n in range(50)])
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert sorted(first.ids() + second.ids()) == sorted(f"e{n}" for n in range(50))


async def test_a_failed_job_is_redelivered_until_its_handler_returns(
    backend: Backend, queue: Queue
) -> None:
    recorder = Recorder()
    recorder.fail_first = {"e2"}
    await queue.enqueue_many([ev("e1"), ev("e2"), ev("e3")])
    await consume(queue, recorder)
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert sorted(recorder.ids()) == ["e1", "e2", "e2", "e3"]


async def test_bad_consumer_options_are_refused(queue: Queue) -> None:
    recorder = Recorder()
    with pytest.raises(ValueError, match="concurrency"):
        await consume(queue, recorder, concurrency=0)
    with pytest.raises(ValueError, match="max_batch_size"):
        await queue.consume_batches(
            ORCHESTRATOR_QUEUE, recorder.batch, max_batch_size=0, max_wait_ms=0
        )
    with pytest.raises(ValueError, match="max_wait_ms"):
        await queue.consume_batches(
            ORCHESTRATOR_QUEUE, recorder.batch, max_batch_size=1, max_wait_ms=-1
        )
    with pytest.raises(ValueError, match="concurrency"):
        await queue.consume_batches(
            ORCHESTRATOR_QUEUE, recorder.batch, max_batch_size=1, max_wait_ms=0, concurrency=0
        )


# --------------------------------------------------------------------------- stop and close


async def test_stop_waits_for_in_flight_jobs_and_leaves_the_rest_queued(
    backend: Backend, queue: Queue
) -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    await queue.enqueue_many([ev("e1"), ev("e2"), ev("e3")])
    consumer = await consume(queue, recorder)
    await recorder.wait_for(1)
    stopping = asyncio.create_task(consumer.stop())
    await settle()
    assert not stopping.done()  # e1's handler is still running
    recorder.gate.set()
    await stopping
    await consumer.stop()  # idempotent
    assert recorder.ids() == ["e1"]
    assert consumer.queue_name == ORCHESTRATOR_QUEUE

    later = Recorder()
    await consume(queue, later)
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert sorted(later.ids()) == ["e2", "e3"]  # e1 finished during stop: done, not redelivered


async def test_close_finishes_in_flight_jobs_and_loses_none(backend: Backend) -> None:
    first = backend.open()
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    await first.enqueue_many([ev("in-flight"), ev("waiting")])
    await first.enqueue(ev("delayed"), delay_ms=100)
    await consume(first, recorder)
    await recorder.wait_for(1)
    closing = asyncio.create_task(first.close())
    await settle()
    assert not closing.done()
    recorder.gate.set()
    await closing
    await first.close()  # idempotent
    assert recorder.ids() == ["in-flight"]
    with pytest.raises(QueueClosedError):
        await first.enqueue(ev("e9"))
    with pytest.raises(QueueClosedError):
        await first.enqueue_many([ev("e9")])
    with pytest.raises(QueueClosedError):
        await consume(first, Recorder())

    second = backend.open()
    later = Recorder()
    await consume(second, later)
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert sorted(later.ids()) == ["delayed", "waiting"]


async def test_a_cancelled_stop_gives_the_in_flight_job_back(
    backend: Backend, queue: Queue
) -> None:
    stuck = Recorder()
    stuck.gate = asyncio.Event()  # never set: the handler would run forever
    await queue.enqueue(ev("e1"))
    consumer = await consume(queue, stuck)
    await stuck.wait_for(1)
    stopping = asyncio.create_task(consumer.stop())
    await settle()
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping

    later = Recorder()
    await consume(queue, later)
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert later.ids() == ["e1"]


# --------------------------------------------------------------------------- batches


async def test_batches_fill_up_to_their_size(backend: Backend, queue: Queue) -> None:
    recorder = Recorder()
    sizes: list[int] = []

    async def handler(jobs: list[QueueJob]) -> None:
        sizes.append(len(jobs))
        await recorder.batch(jobs)

    await queue.enqueue_many([ev(f"e{n}") for n in range(25)])
    await queue.consume_batches(ORCHESTRATOR_QUEUE, handler, max_batch_size=10, max_wait_ms=300)
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert sizes == [10, 10, 5]
    assert sorted(recorder.ids()) == sorted(f"e{n}" for n in range(25))


async def test_a_partial_batch_is_handed_over_after_max_wait(
    backend: Backend, queue: Queue
) -> None:
    recorder = Recorder()
    await queue.consume_batches(
        ORCHESTRATOR_QUEUE, recorder.batch, max_batch_size=100, max_wait_ms=100
    )
    start = asyncio.get_running_loop().time()
    await queue.enqueue_many([ev("e1"), ev("e2")])
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert sorted(recorder.ids()) == ["e1", "e2"]
    assert min(recorder.times) - start >= 0.1 - CLOCK_SLACK_S


async def test_a_failed_batch_is_redelivered_whole(backend: Backend, queue: Queue) -> None:
    batches: list[list[str]] = []

    async def fail_once(jobs: list[QueueJob]) -> None:
        batches.append(sorted(_id(job) for job in jobs))
        if len(batches) == 1:
            raise RuntimeError("the whole batch fails")

    await queue.enqueue_many([ev("e1"), ev("e2"), ev("e3")])
    await queue.consume_batches(ORCHESTRATOR_QUEUE, fail_once, max_batch_size=3, max_wait_ms=100)
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert batches[0] == ["e1", "e2", "e3"]
    assert sorted(id_ for batch in batches[1:] for id_ in batch) == ["e1", "e2", "e3"]


async def test_a_partial_batch_failure_redelivers_only_the_failed_jobs(
    backend: Backend, queue: Queue
) -> None:
    delivered: list[str] = []

    async def reject_e2_once(jobs: list[QueueJob]) -> None:
        delivered.extend(_id(job) for job in jobs)
        failed = [job for job in jobs if _id(job) == "e2"]
        if failed and delivered.count("e2") == 1:
            raise PartialBatchFailure(failed)

    await queue.enqueue_many([ev("e1"), ev("e2"), ev("e3")])
    await queue.consume_batches(
        ORCHESTRATOR_QUEUE, reject_e2_once, max_batch_size=3, max_wait_ms=100
    )
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert sorted(delivered) == ["e1", "e2", "e2", "e3"]


async def test_batch_concurrency_limits_batches_in_flight(backend: Backend, queue: Queue) -> None:
    recorder = Recorder()
    recorder.gate = asyncio.Event()
    await queue.enqueue_many([ev(f"e{n}") for n in range(12)])
    await queue.consume_batches(
        ORCHESTRATOR_QUEUE, recorder.batch, max_batch_size=2, max_wait_ms=0, concurrency=2
    )
    await recorder.wait_until(lambda: recorder.in_flight >= 2)
    await asyncio.sleep(0.05)  # room for a third batch to start, were the limit broken
    assert recorder.max_in_flight == 2
    recorder.gate.set()
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert recorder.max_in_flight == 2
    assert sorted(recorder.ids()) == sorted(f"e{n}" for n in range(12))


async def test_stop_hands_over_the_batch_being_gathered(backend: Backend, queue: Queue) -> None:
    recorder = Recorder()
    consumer = await queue.consume_batches(
        ORCHESTRATOR_QUEUE, recorder.batch, max_batch_size=10, max_wait_ms=100
    )
    await queue.enqueue(ev("e1"))
    await settle()
    if backend.until_taken is not None:
        await backend.until_taken(ORCHESTRATOR_QUEUE)
    await consumer.stop()
    await backend.drain(ORCHESTRATOR_QUEUE)
    assert recorder.ids() == ["e1"]


# --------------------------------------------------------------------------- memory driver only


def _all(jobs: Iterable[QueueJob]) -> list[str]:
    return [_id(job) for job in jobs]


async def test_memory_releases_a_dedupe_key_when_its_job_is_done() -> None:
    queue = MemoryQueue()
    recorder = Recorder()
    await consume(queue, recorder)
    await queue.enqueue(ev("e1"))
    await queue.join(ORCHESTRATOR_QUEUE, timeout=HANG_GUARD_S)
    await queue.enqueue(ev("e1"))
    await queue.join(ORCHESTRATOR_QUEUE, timeout=HANG_GUARD_S)
    await queue.close()
    assert _all(recorder.jobs) == ["e1", "e1"]


async def test_memory_join_counts_delayed_jobs_and_times_out() -> None:
    queue = MemoryQueue()
    await queue.join(ORCHESTRATOR_QUEUE, timeout=0)  # nothing pending: returns at once
    await queue.enqueue(ev("e1"), delay_ms=60_000)
    assert queue.backend.pending(ORCHESTRATOR_QUEUE) == 1
    with pytest.raises(TimeoutError, match="1 job"):
        await queue.join(ORCHESTRATOR_QUEUE, timeout=0.01)
    await queue.close()


async def test_memory_backs_off_before_redelivering() -> None:
    queue = MemoryQueue(min_backoff_ms=150, max_backoff_ms=150)
    recorder = Recorder()
    recorder.fail_first = {"e1"}
    await consume(queue, recorder)
    await queue.enqueue(ev("e1"))
    await queue.join(ORCHESTRATOR_QUEUE, timeout=HANG_GUARD_S)
    await queue.close()
    assert _all(recorder.jobs) == ["e1", "e1"]
    assert recorder.times[1] - recorder.times[0] >= 0.15 - CLOCK_SLACK_S


async def test_memory_backoff_doubles_up_to_its_cap() -> None:
    queue = MemoryQueue(min_backoff_ms=100, max_backoff_ms=350)
    assert [queue._backoff_s(n) for n in (1, 2, 3, 4, 50)] == [0.1, 0.2, 0.35, 0.35, 0.35]
    with pytest.raises(ValueError, match="backoff"):
        MemoryQueue(min_backoff_ms=10, max_backoff_ms=5)


async def test_memory_treats_a_handlers_own_cancellation_as_a_failure() -> None:
    queue = MemoryQueue(min_backoff_ms=1, max_backoff_ms=1)
    calls: list[str] = []

    async def cancelled_inside(job: QueueJob) -> None:
        calls.append(_id(job))
        if len(calls) == 1:
            raise asyncio.CancelledError  # e.g. an inner timeout gone wrong

    await queue.consume(ORCHESTRATOR_QUEUE, cancelled_inside, concurrency=1)
    await queue.enqueue_many([ev("e1"), ev("e2")])
    await queue.join(ORCHESTRATOR_QUEUE, timeout=HANG_GUARD_S)
    await queue.close()
    assert sorted(calls) == ["e1", "e1", "e2"]  # and the worker survived to take e2


async def test_memory_refuses_data_that_json_would_change() -> None:
    queue = MemoryQueue()
    when = datetime.now(UTC)
    with pytest.raises(TypeError):
        await queue.enqueue(ev("e1", at=when))
    assert queue.backend.pending(ORCHESTRATOR_QUEUE) == 0
    await queue.close()


async def test_memory_queues_without_a_shared_backend_are_separate() -> None:
    one, two = MemoryQueue(), MemoryQueue()
    await one.enqueue(ev("e1"))
    assert (one.backend.pending(ORCHESTRATOR_QUEUE), two.backend.pending(ORCHESTRATOR_QUEUE)) == (
        1,
        0,
    )
    await one.close()
    await two.close()
