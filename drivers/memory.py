"""The memory queue driver: process-local asyncio queues behind the engine's queue port.

A real driver, not a mock: it keeps the contract of :class:`statefleet.engine.ports.Queue`
(dedupe while pending, delays, at-least-once redelivery with backoff, concurrency
limits, batches, graceful close) and is checked by the same contract suite as the
BullMQ and Cloud Tasks drivers. It is for tests and single-process runs: the jobs
live in this process, so they do not reach a worker in another process and do not
survive a restart (the Postgres sweep of due work re-enqueues them on the next start).

Two objects, as Redis and a BullMQ client are two:

* :class:`MemoryBackend` holds the jobs. Clients sharing one backend share its
  queues, so a job enqueued by the API's client is consumed by the worker's, and
  jobs left over when one client closes are there for the next.
* :class:`MemoryQueue` is the driver, a client of one backend. ``MemoryQueue()``
  makes its own private backend.

Layout of a backend, per queue name: an :class:`asyncio.Queue` of jobs that are due
(FIFO, not a promise), a dict from dedupe key to the pending job holding it, and a
count of outstanding jobs (waiting, delayed, in flight, or waiting to be retried)
with an event set when it is zero, which :meth:`MemoryQueue.join` awaits. Delayed
jobs wait in asyncio's own timer heap (one ``loop.call_later`` handle per job, no
task or sleep per job) and move to the due queue when their timer fires. Job data
is stored serialised, as JSON, so handlers get a fresh copy on every delivery and
data that would not survive Redis fails here too. A backend and its clients belong
to one event loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from statefleet.engine.ports import (
    BatchHandler,
    Consumer,
    JobHandler,
    PartialBatchFailure,
    QueueClosedError,
    QueueJob,
)

__all__ = ["MemoryBackend", "MemoryQueue"]

logger = logging.getLogger(__name__)

# Refuse datetimes and dataclasses instead of letting orjson quietly turn them into
# strings and dicts: the job would come back as different data from what was sent.
_DUMPS_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


@dataclass(eq=False, slots=True)
class _Entry:
    """One accepted job, held as Redis would hold it: serialised data plus options."""

    queue: str
    name: str
    body: bytes
    dedupe_key: str | None
    run_at: datetime | None
    deliveries: int = 0

    def to_job(self) -> QueueJob:
        return QueueJob(
            self.queue, self.name, orjson.loads(self.body), self.dedupe_key, self.run_at
        )


class _QueueState:
    """The jobs of one queue name in one backend."""

    __slots__ = ("due", "idle", "keys", "outstanding")

    def __init__(self) -> None:
        self.due: asyncio.Queue[_Entry] = asyncio.Queue()
        self.keys: dict[str, _Entry] = {}
        self.outstanding = 0
        self.idle = asyncio.Event()
        self.idle.set()


class MemoryBackend:
    """The jobs of every queue, shared by the :class:`MemoryQueue` clients built on it.

    It plays the part Redis plays for BullMQ and has no life of its own: it is a
    container, used only through its clients, from one event loop.
    """

    def __init__(self) -> None:
        self._queues: dict[str, _QueueState] = {}
        self._accepted: dict[str, int] = {}

    def accepted(self, queue_name: str) -> int:
        """How many jobs ``queue_name`` took so far (a duplicate key's no-op not counted)."""
        return self._accepted.get(queue_name, 0)

    def pending(self, queue_name: str) -> int:
        """How many jobs of ``queue_name`` are waiting, delayed, in flight or awaiting retry."""
        state = self._queues.get(queue_name)
        return 0 if state is None else state.outstanding

    def _state(self, queue_name: str) -> _QueueState:
        state = self._queues.get(queue_name)
        if state is None:
            state = self._queues[queue_name] = _QueueState()
        return state

    def _accept(self, entry: _Entry, delay_s: float) -> None:
        state = self._state(entry.queue)
        if entry.dedupe_key is not None:
            if entry.dedupe_key in state.keys:
                return  # a job with this key is pending: enqueue is a no-op
            state.keys[entry.dedupe_key] = entry
        self._accepted[entry.queue] = self._accepted.get(entry.queue, 0) + 1
        state.outstanding += 1
        state.idle.clear()
        self._schedule(entry, delay_s)

    def _schedule(self, entry: _Entry, delay_s: float) -> None:
        """Make ``entry`` due now, or after ``delay_s`` through the loop's timer heap."""
        if delay_s <= 0:
            self._state(entry.queue).due.put_nowait(entry)
        else:
            asyncio.get_running_loop().call_later(delay_s, self._schedule, entry, 0.0)

    def _done(self, entry: _Entry) -> None:
        state = self._state(entry.queue)
        key = entry.dedupe_key
        if key is not None and state.keys.get(key) is entry:
            del state.keys[key]
        state.outstanding -= 1
        if state.outstanding == 0:
            state.idle.set()


class _MemoryConsumer:
    """``concurrency`` worker tasks taking batches of due jobs of one queue.

    A single-job consumer is a batch consumer with batches of one, so there is one
    delivery path. A worker waiting for its first job is idle and is cancelled by
    :meth:`stop` (``asyncio.Queue.get`` gives the job back when cancelled); a worker
    gathering a batch or running the handler is never cancelled by ``stop``: it
    finishes and then sees that it should stop.
    """

    def __init__(
        self,
        client: MemoryQueue,
        queue_name: str,
        handler: BatchHandler,
        *,
        max_batch_size: int,
        max_wait_s: float,
        concurrency: int,
    ) -> None:
        self._client = client
        self._queue_name = queue_name
        self._state = client.backend._state(queue_name)
        self._handler = handler
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._stopping = False
        self._idle: set[asyncio.Task[None]] = set()
        self._workers = [
            asyncio.create_task(self._work(), name=f"memory-queue:{queue_name}:{index}")
            for index in range(concurrency)
        ]

    @property
    def queue_name(self) -> str:
        return self._queue_name

    async def stop(self) -> None:
        """See :meth:`statefleet.engine.ports.Consumer.stop`."""
        self._stopping = True
        for worker in self._idle:
            worker.cancel()
        # If this await is cancelled, gather cancels the workers: their handlers see
        # CancelledError and their jobs go back to the queue (see _deliver).
        results = await asyncio.gather(*self._workers, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception):  # a bug in this module, not in a handler
                logger.error("memory queue worker crashed", exc_info=result)
        self._client._consumers.discard(self)

    async def _work(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        due = self._state.due
        while not self._stopping:
            self._idle.add(task)
            try:
                first = await due.get()
            finally:
                self._idle.discard(task)
            batch = [first]
            try:
                await self._fill(batch)
            except BaseException:
                self._requeue(batch)
                raise
            await self._deliver(batch)

    async def _fill(self, batch: list[_Entry]) -> None:
        """Add due jobs to ``batch`` until it is full or ``max_wait`` has passed."""
        due = self._state.due
        deadline = asyncio.get_running_loop().time() + self._max_wait_s
        while len(batch) < self._max_batch_size and not due.empty():
            batch.append(due.get_nowait())
        if len(batch) >= self._max_batch_size or self._max_wait_s <= 0:
            return
        try:
            # Cancelling Queue.get never loses a job, so the timeout cannot either.
            async with asyncio.timeout_at(deadline):
                while len(batch) < self._max_batch_size:
                    batch.append(await due.get())
        except TimeoutError:
            pass

    async def _deliver(self, batch: list[_Entry]) -> None:
        for entry in batch:
            entry.deliveries += 1
        jobs = [entry.to_job() for entry in batch]
        try:
            await self._handler(jobs)
        except PartialBatchFailure as failure:
            failed = {id(job) for job in failure.failed}
            for job, entry in zip(jobs, batch, strict=True):
                if id(job) in failed:
                    self._retry(entry, failure)
                else:
                    self._client.backend._done(entry)
        except Exception as error:
            for entry in batch:
                self._retry(entry, error)
        except BaseException as error:
            task = asyncio.current_task()
            if isinstance(error, asyncio.CancelledError) and task and not task.cancelling():
                # The handler's own cancellation (not ours): a failure like any other.
                for entry in batch:
                    self._retry(entry, error)
                return
            self._requeue(batch)  # we are being cancelled or the process is exiting
            raise
        else:
            for entry in batch:
                self._client.backend._done(entry)

    def _retry(self, entry: _Entry, error: BaseException) -> None:
        delay_s = self._client._backoff_s(entry.deliveries)
        logger.warning(
            "%s job %s failed (delivery %d); redelivering in %.3fs: %r",
            entry.queue,
            entry.dedupe_key or "(no key)",
            entry.deliveries,
            delay_s,
            error,
            exc_info=error if not isinstance(error, PartialBatchFailure) else None,
        )
        self._client.backend._schedule(entry, delay_s)

    def _requeue(self, batch: list[_Entry]) -> None:
        for entry in batch:
            self._client.backend._schedule(entry, 0.0)


class MemoryQueue:
    """The memory driver: a client of a :class:`MemoryBackend` implementing the queue port.

    Every method keeps the obligations written on :class:`statefleet.engine.ports.Queue`.
    Specific to this driver: nothing blocks (``enqueue`` never awaits I/O); a dedupe
    key is released as soon as its job is done; a failed job is redelivered after
    ``min_backoff_ms * 2 ** (deliveries - 1)``, capped at ``max_backoff_ms``, forever
    (the engine dead-letters in Postgres, not here); jobs left undelivered by
    :meth:`close` stay in the backend, for another client of it, until the process ends.

    Args:
        backend: the jobs to share with other clients; a new private one by default.
        min_backoff_ms: the delay before the first redelivery of a failed job.
        max_backoff_ms: the cap on that delay as it doubles.
    """

    def __init__(
        self,
        backend: MemoryBackend | None = None,
        *,
        min_backoff_ms: int = 100,
        max_backoff_ms: int = 30_000,
    ) -> None:
        if min_backoff_ms < 0 or max_backoff_ms < min_backoff_ms:
            raise ValueError("need 0 <= min_backoff_ms <= max_backoff_ms")
        self.backend = MemoryBackend() if backend is None else backend
        self._min_backoff_ms = min_backoff_ms
        self._max_backoff_ms = max_backoff_ms
        self._consumers: set[_MemoryConsumer] = set()
        self._closed = False

    async def enqueue(self, job: QueueJob, *, delay_ms: int = 0) -> None:
        """See :meth:`statefleet.engine.ports.Queue.enqueue`."""
        if delay_ms < 0:
            raise ValueError(f"delay_ms must not be negative, got {delay_ms}")
        self._check_open()
        entry = _serialise(job)
        self.backend._accept(entry, max(delay_ms / 1000, _seconds_until(job.run_at)))

    async def enqueue_many(self, jobs: Iterable[QueueJob]) -> None:
        """See :meth:`statefleet.engine.ports.Queue.enqueue_many`.

        Here it is all or nothing: every job is serialised before any is accepted.
        """
        self._check_open()
        jobs = list(jobs)
        entries = [_serialise(job) for job in jobs]
        for job, entry in zip(jobs, entries, strict=True):
            self.backend._accept(entry, _seconds_until(job.run_at))

    async def consume(self, queue_name: str, handler: JobHandler, *, concurrency: int) -> Consumer:
        """See :meth:`statefleet.engine.ports.Queue.consume`."""

        async def one(jobs: list[QueueJob]) -> None:
            await handler(jobs[0])

        return self._start(
            queue_name, one, max_batch_size=1, max_wait_ms=0, concurrency=concurrency
        )

    async def consume_batches(
        self,
        queue_name: str,
        handler: BatchHandler,
        *,
        max_batch_size: int,
        max_wait_ms: int,
        concurrency: int = 1,
    ) -> Consumer:
        """See :meth:`statefleet.engine.ports.Queue.consume_batches`."""
        return self._start(
            queue_name,
            handler,
            max_batch_size=max_batch_size,
            max_wait_ms=max_wait_ms,
            concurrency=concurrency,
        )

    async def depth(self, queue_name: str) -> int:
        """Jobs of ``queue_name`` waiting, delayed, in flight or awaiting retry (metrics)."""
        return self.backend.pending(queue_name)

    async def close(self) -> None:
        """See :meth:`statefleet.engine.ports.Queue.close`."""
        self._closed = True
        await asyncio.gather(*(consumer.stop() for consumer in list(self._consumers)))

    async def join(self, queue_name: str, timeout: float | None = None) -> None:
        """Test-only: wait until ``queue_name`` has no job waiting, delayed, retrying or in flight.

        Counts the jobs of every client of the backend. A job whose handler keeps
        failing is never done, so ``join`` then waits until ``timeout``.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
        """
        state = self.backend._state(queue_name)
        try:
            async with asyncio.timeout(timeout):
                await state.idle.wait()
        except TimeoutError:
            message = f"{queue_name}: {state.outstanding} job(s) still pending after {timeout}s"
            raise TimeoutError(message) from None

    def _start(
        self,
        queue_name: str,
        handler: BatchHandler,
        *,
        max_batch_size: int,
        max_wait_ms: int,
        concurrency: int,
    ) -> Consumer:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must not be negative, got {max_wait_ms}")
        self._check_open()
        consumer = _MemoryConsumer(
            self,
            queue_name,
            handler,
            max_batch_size=max_batch_size,
            max_wait_s=max_wait_ms / 1000,
            concurrency=concurrency,
        )
        self._consumers.add(consumer)
        return consumer

    def _backoff_s(self, deliveries: int) -> float:
        exponent = min(max(deliveries - 1, 0), 32)
        backoff_ms: int = self._min_backoff_ms << exponent
        return min(self._max_backoff_ms, backoff_ms) / 1000

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosedError("the memory queue driver was closed")


def _serialise(job: QueueJob) -> _Entry:
    body = orjson.dumps(job.data, option=_DUMPS_OPTIONS)  # raises TypeError (JSONEncodeError)
    return _Entry(job.queue, job.name, body, job.dedupe_key, job.run_at)


def _seconds_until(run_at: datetime | None) -> float:
    if run_at is None:
        return 0.0
    return (run_at - datetime.now(UTC)).total_seconds()
