"""The BullMQ driver: the queue port on Redis, in BullMQ's own layout, via PyPI ``bullmq``.

Why BullMQ's layout rather than our own Redis scheme: its users already run Node
BullMQ producers and tools, and ``docs/queue-jobs.md`` promises that
``new Queue('workflow-orchestrator').add('event', data, {jobId})`` from Node feeds the
engine unchanged, and that a job the engine adds is visible to Node's tools.

What the Python port does not do for us, and this module therefore does:

* Node refuses custom job ids that contain ``:`` or look like integers; Python does
  not check. Every dedupe key goes through :func:`job_id_for`, which passes valid keys
  through unchanged and maps offending ones deterministically to ``sfh-<sha256>``,
  so every id we write is one Node accepts and the same key always maps to the same id.
* BullMQ has no batch consumer outside its commercial edition: ``consume_batches``
  runs ``max_batch_size * concurrency`` worker slots whose processors park their jobs
  in a buffer that a gatherer hands over in batches. Slots are spread over workers
  of at most 64 each (see ``_SLOTS_PER_WORKER``).
* A cancelled ``Consumer.stop`` cancels the in-flight handlers and fails their jobs
  back to Redis (a retry after the backoff), so a job is never left locked until the
  stalled-job check notices it 30 s later.

Dedupe lasts only while the job exists (``removeOnComplete``): apply-once comes from
the engine's event ids and task claims, as the port requires.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from bullmq import Job as BullJob
from bullmq import Queue as BullQueue
from bullmq import Worker as BullWorker

from statefleet.engine.ports import (
    ORCHESTRATOR_QUEUE,
    BatchHandler,
    Consumer,
    JobHandler,
    PartialBatchFailure,
    QueueClosedError,
    QueueJob,
)

__all__ = [
    "DEFAULT_PREFIX",
    "BullMQQueue",
    "bullmq_queue_from_env",
    "job_id_for",
]

log = logging.getLogger(__name__)

#: How long a stopping consumer waits for in-flight jobs before force-closing.
_CLOSE_GRACE_S = 5.0
#: Most slots one BullMQ worker gets; a consumer with more runs several workers.
#: The port's Worker.run waits on every slot's task each time any job finishes, so its
#: cost per job grows with its concurrency: at 512 slots the `bullmq` benchmark measured
#: the package itself at 60% of its rate at 32 slots. Workers of 64 slots each (two
#: Redis connections apiece) keep that loop short while the slots add up.
_SLOTS_PER_WORKER = 64

DEFAULT_PREFIX: Final = "bull"
"""BullMQ's own default key prefix, so Node code with default options sees our jobs."""

# A retried job is redelivered after min_backoff * 2**(n-1) (BullMQ's built-in
# "exponential", which Node workers understand too). After this many deliveries the
# job is left in BullMQ's failed set; the engine's Postgres sweep re-enqueues due
# work, so this only bounds how long a poison job keeps a Redis slot busy.
DEFAULT_ATTEMPTS: Final = 25
_INTEGER_LIKE: Final = re.compile(r"^\s*[+-]?\d+(\.\d*)?\s*$")
_HASHED_PREFIX: Final = "sfh-"
# A job's hash lives at ``<prefix>:<queue>:<id>``, beside the queue's own keys: an id
# equal to one of these names would overwrite BullMQ's bookkeeping (Node does not
# check this either; a job id "marker" breaks every later delayed add).
_RESERVED_IDS: Final = frozenset(
    {
        "active", "wait", "waiting-children", "paused", "completed", "failed", "delayed",
        "repeat", "stalled", "limiter", "prioritized", "id", "stalled-check", "meta", "pc",
        "events", "marker", "de", "metrics", "logs",
    }
)  # fmt: skip


def job_id_for(dedupe_key: str) -> str:
    """The BullMQ job id of a dedupe key: the key itself when Node would accept it.

    Node's ``Queue.add`` rejects a custom id containing ``:`` (it is BullMQ's key
    separator) and one that parses as an integer (it would collide with the
    auto-incremented ids). Such keys, the names of BullMQ's own per-queue keys
    (``marker``, ``meta``, ...), and keys that already start with our hash prefix,
    become ``sfh-`` followed by the SHA-256 of the key: deterministic, so a duplicate
    is still a duplicate, and never a valid key's own id.
    """
    if (
        ":" in dedupe_key
        or _INTEGER_LIKE.match(dedupe_key)
        or dedupe_key in _RESERVED_IDS
        or dedupe_key.startswith(_HASHED_PREFIX)
    ):
        return _HASHED_PREFIX + hashlib.sha256(dedupe_key.encode()).hexdigest()
    return dedupe_key


class _HandlerCancelled(Exception):
    """The handler was cancelled (by a cancelled ``stop``, or by itself): redeliver."""


class BullMQQueue:
    """The BullMQ driver: a client of one Redis, implementing the queue port.

    Every method keeps the obligations on :class:`statefleet.engine.ports.Queue`.
    Each ``consume`` opens its own BullMQ worker (two Redis connections: one blocks
    waiting for jobs). Redis restarts are survived by the port's own reconnecting
    clients: enqueues raise while Redis is down, workers retry and resume.

    Args:
        redis_url: ``redis://`` URL (``REDIS_URL``).
        prefix: BullMQ key prefix (``WORKFLOW_BULLMQ_PREFIX``), ``bull`` by default.
        min_backoff_ms: delay before the first redelivery of a failed job; doubles.
        attempts: deliveries before BullMQ gives a job up (see ``DEFAULT_ATTEMPTS``).
        stalled_interval_ms: how often workers look for jobs whose worker died.
    """

    def __init__(
        self,
        redis_url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        min_backoff_ms: int = 1_000,
        attempts: int = DEFAULT_ATTEMPTS,
        stalled_interval_ms: int = 30_000,
    ) -> None:
        if min_backoff_ms < 1 or attempts < 1:
            raise ValueError("need min_backoff_ms >= 1 and attempts >= 1")
        self.redis_url = redis_url
        self.prefix = prefix
        self._min_backoff_ms = min_backoff_ms
        self._attempts = attempts
        self._stalled_interval_ms = stalled_interval_ms
        self._queues: dict[str, BullQueue] = {}
        self._consumers: set[_BullConsumer] = set()
        self._closed = False
        self._closing: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- producing

    async def enqueue(self, job: QueueJob, *, delay_ms: int = 0) -> None:
        """See :meth:`statefleet.engine.ports.Queue.enqueue`."""
        if delay_ms < 0:
            raise ValueError(f"delay_ms must not be negative, got {delay_ms}")
        self._check_open()
        data, opts = self._wire(job, delay_ms)
        await self._queue(job.queue).add(job.name, data, opts)

    async def enqueue_many(self, jobs: Iterable[QueueJob]) -> None:
        """See :meth:`statefleet.engine.ports.Queue.enqueue_many`: one ``addBulk`` per queue.

        Every job is serialised before any is sent, so a bad job adds nothing.
        """
        self._check_open()
        by_queue: dict[str, list[dict[str, Any]]] = {}
        seen: set[tuple[str, str]] = set()
        for job in jobs:
            data, opts = self._wire(job, 0)
            if job.dedupe_key is not None:
                if (job.queue, job.dedupe_key) in seen:
                    continue
                seen.add((job.queue, job.dedupe_key))
            by_queue.setdefault(job.queue, []).append(
                {"name": job.name, "data": data, "opts": opts}
            )
        for queue_name, entries in by_queue.items():
            await self._queue(queue_name).addBulk(entries)

    def _wire(self, job: QueueJob, delay_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
        # orjson refuses what JSON would silently change (non-string keys, objects).
        data = orjson.loads(orjson.dumps(job.data))
        delay = max(delay_ms, _ms_until(job.run_at))
        opts: dict[str, Any] = {
            "attempts": self._attempts,
            "backoff": {"type": "exponential", "delay": self._min_backoff_ms},
            "removeOnComplete": True,
            "removeOnFail": False,
        }
        if delay > 0:
            opts["delay"] = delay
        if job.dedupe_key is not None:
            opts["jobId"] = job_id_for(job.dedupe_key)
        return data, opts

    def _queue(self, name: str) -> BullQueue:
        queue = self._queues.get(name)
        if queue is None:
            queue = BullQueue(name, {"connection": self.redis_url, "prefix": self.prefix})
            self._queues[name] = queue
        return queue

    # ----------------------------------------------------------------- consuming

    async def consume(self, queue_name: str, handler: JobHandler, *, concurrency: int) -> Consumer:
        """See :meth:`statefleet.engine.ports.Queue.consume`."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._check_open()
        consumer = _BullConsumer(self, queue_name, handler, concurrency)
        self._consumers.add(consumer)
        return consumer

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
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must not be negative, got {max_wait_ms}")
        self._check_open()
        gatherer = _Gatherer(handler, max_batch_size, max_wait_ms / 1000, concurrency)
        consumer = _BullConsumer(
            self, queue_name, gatherer.take, max_batch_size * concurrency, gatherer
        )
        self._consumers.add(consumer)
        return consumer

    async def close(self) -> None:
        """See :meth:`statefleet.engine.ports.Queue.close`; also closes the Redis clients."""
        self._closed = True
        if self._closing is None:
            self._closing = asyncio.create_task(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        await asyncio.gather(*(consumer.stop() for consumer in list(self._consumers)))
        queues, self._queues = list(self._queues.values()), {}
        for queue in queues:
            await queue.close()

    async def ping(self) -> None:
        """Raises unless Redis answers ``PING``: the API's ``/readyz`` asks this."""
        self._check_open()
        client = await self._queue(ORCHESTRATOR_QUEUE).client
        await client.ping()

    async def depth(self, queue_name: str) -> int:
        """Jobs of ``queue_name`` waiting, delayed or active (the ``/metrics`` gauge)."""
        return sum((await self.counts(queue_name)).values())

    async def counts(self, queue_name: str) -> dict[str, int]:
        """Jobs per BullMQ state of one queue (for drains in tests and health checks)."""
        counts: dict[str, int] = await self._queue(queue_name).getJobCounts(
            "waiting", "delayed", "active", "prioritized", "paused", "waiting-children"
        )
        return counts

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosedError("the bullmq queue driver was closed")


class _Gatherer:
    """Turns one-job-at-a-time BullMQ processors into batches for a batch handler."""

    def __init__(
        self, handler: BatchHandler, max_batch_size: int, max_wait_s: float, concurrency: int
    ) -> None:
        self._handler = handler
        self._max = max_batch_size
        self._max_wait_s = max_wait_s
        self._slots = asyncio.Semaphore(concurrency)
        self._buffer: list[tuple[QueueJob, asyncio.Future[None]]] = []
        self._changed = asyncio.Event()
        self._flush = False
        self.batches: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="statefleet-bullmq-gatherer")

    def flush(self) -> None:
        """Hand over what is buffered without waiting for more (the consumer is stopping)."""
        self._flush = True
        self._changed.set()

    async def take(self, job: QueueJob) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buffer.append((job, future))
        self._changed.set()
        await future

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._slots.acquire()
            try:
                while not self._buffer:
                    self._changed.clear()
                    await self._changed.wait()
                deadline = loop.time() + self._max_wait_s
                while len(self._buffer) < self._max and not self._flush:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    self._changed.clear()
                    try:
                        async with asyncio.timeout(remaining):
                            await self._changed.wait()
                    except TimeoutError:
                        break
            except BaseException:
                self._slots.release()
                raise
            batch, self._buffer = self._buffer[: self._max], self._buffer[self._max :]
            task = asyncio.create_task(self._hand_over(batch))
            self.batches.add(task)
            task.add_done_callback(self.batches.discard)

    async def _hand_over(self, batch: list[tuple[QueueJob, asyncio.Future[None]]]) -> None:
        try:
            await self._handler([job for job, _ in batch])
        except PartialBatchFailure as partial:
            failed = {id(job) for job in partial.failed}
            for job, future in batch:
                if id(job) in failed:
                    _settle(future, partial)
                else:
                    _settle(future, None)
        except asyncio.CancelledError:
            for _, future in batch:
                _settle(future, _HandlerCancelled("batch handler cancelled"))
        except Exception as error:
            for _, future in batch:
                _settle(future, error)
        else:
            for _, future in batch:
                _settle(future, None)
        finally:
            self._slots.release()


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class _BullConsumer:
    """BullMQ workers (one per 64 slots) delivering one queue to one handler."""

    def __init__(
        self,
        client: BullMQQueue,
        queue_name: str,
        handler: JobHandler,
        concurrency: int,
        gatherer: _Gatherer | None = None,
    ) -> None:
        self._client = client
        self._queue_name = queue_name
        self._handler = handler
        self._gatherer = gatherer
        self._handlers: set[asyncio.Task[None]] = set()
        self._stopping: asyncio.Task[None] | None = None
        count = -(-concurrency // _SLOTS_PER_WORKER)  # ceil
        self._workers = [
            BullWorker(
                queue_name,
                self._process,
                {
                    "connection": client.redis_url,
                    "prefix": client.prefix,
                    "concurrency": concurrency // count + (1 if k < concurrency % count else 0),
                    "autorun": False,
                    "stalledInterval": client._stalled_interval_ms,
                    # BullMQ's 15 s pause after a connection error delays both the
                    # recovery from a Redis restart and a close racing a blocking read.
                    "runRetryDelay": 1_000,
                },
            )
            for k in range(count)
        ]
        for worker in self._workers:
            worker.on("error", self._on_error)
        if gatherer is not None:
            gatherer.start()
        self._running = [
            asyncio.create_task(worker.run(), name=f"bullmq-{queue_name}-{k}")
            for k, worker in enumerate(self._workers)
        ]

    @property
    def queue_name(self) -> str:
        """See :attr:`statefleet.engine.ports.Consumer.queue_name`."""
        return self._queue_name

    async def stop(self) -> None:
        """See :meth:`statefleet.engine.ports.Consumer.stop`."""
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._stop())
        try:
            await asyncio.shield(self._stopping)
        except asyncio.CancelledError:
            # Fail the in-flight jobs back to Redis (redelivered after the backoff)
            # instead of leaving them locked until the stalled check.
            for task in list(self._handlers):
                task.cancel()
            for batch in list(self._gatherer.batches if self._gatherer else ()):
                batch.cancel()
            raise

    async def _stop(self) -> None:
        if self._gatherer is not None:
            self._gatherer.flush()
        # The port's Worker.close() can wait forever (seen on a loaded machine: a close
        # that never returned). Give in-flight jobs a grace period, then force-close:
        # forced jobs fail back to Redis and are redelivered, so nothing is lost.
        await asyncio.gather(
            *(
                self._close(worker, running)
                for worker, running in zip(self._workers, self._running, strict=True)
            )
        )
        if self._gatherer is not None:
            await self._gatherer.stop()
        self._client._consumers.discard(self)

    async def _close(self, worker: BullWorker, running: asyncio.Task[None]) -> None:
        graceful = asyncio.ensure_future(worker.close())
        try:
            await asyncio.wait_for(asyncio.shield(graceful), timeout=_CLOSE_GRACE_S)
        except TimeoutError:
            log.warning("bullmq worker of %s did not close in time; forcing", self._queue_name)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(worker.close(force=True), timeout=_CLOSE_GRACE_S)
            graceful.cancel()
            with contextlib.suppress(BaseException):
                await graceful
        try:
            await asyncio.wait_for(asyncio.shield(running), timeout=_CLOSE_GRACE_S)
        except (TimeoutError, asyncio.CancelledError):
            running.cancel()
            with contextlib.suppress(BaseException):
                await running

    async def _process(self, job: BullJob, token: str) -> None:
        data = job.data if isinstance(job.data, dict) else {"_": job.data}
        queue_job = QueueJob(self._queue_name, str(job.name), data)

        async def handle() -> None:  # create_task takes a coroutine, the port an awaitable
            await self._handler(queue_job)

        task = asyncio.create_task(handle())
        self._handlers.add(task)
        try:
            await asyncio.wait({task})
        finally:
            self._handlers.discard(task)
        error: BaseException | None
        if task.cancelled():
            error = _HandlerCancelled("handler cancelled; the job goes back to the queue")
        else:
            error = task.exception()
        if error is not None:
            log.warning(
                "%s job %s failed (delivery %d); BullMQ redelivers it after a backoff: %r",
                self._queue_name,
                job.id,
                int(job.attemptsMade) + 1,
                error,
                exc_info=error if not isinstance(error, PartialBatchFailure) else None,
            )
            raise error if isinstance(error, Exception) else _HandlerCancelled(repr(error))

    def _on_error(self, error: BaseException, *args: object) -> None:
        log.warning("bullmq worker of %s: %r (it retries)", self._queue_name, error)


def _ms_until(run_at: datetime | None) -> int:
    if run_at is None:
        return 0
    return max(0, int((run_at - datetime.now(UTC)).total_seconds() * 1000) + 1)


def bullmq_queue_from_env(env: Mapping[str, str]) -> BullMQQueue:
    """The BullMQ driver configured by ``REDIS_URL`` and ``WORKFLOW_BULLMQ_PREFIX``.

    ``REDIS_URL`` defaults to ``redis://localhost:6379`` (docs/configuration.md), so the
    production default (BullMQ) works against a local Redis with no configuration.
    """
    url = env.get("REDIS_URL", "").strip() or "redis://localhost:6379"
    prefix = env.get("WORKFLOW_BULLMQ_PREFIX", "").strip() or DEFAULT_PREFIX
    return BullMQQueue(url, prefix=prefix)
