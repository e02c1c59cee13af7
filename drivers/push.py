"""The in-process bridge between HTTP push deliveries and the consumers of a push driver.

Why: under a push driver (Cloud Tasks) no worker pulls jobs; the broker POSTs each job
to ``/internal/queues/<queue>``. ``consume``/``consume_batches`` therefore only register
their handler here, and the HTTP route hands every pushed job to :meth:`PushBridge.deliver`,
so the worker's job handling is the same code under every driver. The HTTP answer is the
acknowledgement: a handler that returns is a 2xx, one that raises a 5xx (retry).
"""

from __future__ import annotations

import asyncio
import itertools

from statefleet.engine.ports import BatchHandler, QueueJob

__all__ = ["NoConsumerError", "PushBridge", "PushConsumer"]


class NoConsumerError(RuntimeError):
    """No consumer of this queue runs in this process yet: the broker should retry."""


class PushConsumer:
    """One handler registered for one queue; ``stop`` waits for its in-flight jobs."""

    def __init__(self, bridge: PushBridge, queue_name: str, handler: BatchHandler, limit: int):
        self._bridge = bridge
        self._queue_name = queue_name
        self._handler = handler
        self._slots = asyncio.Semaphore(limit)
        self._in_flight: set[asyncio.Task[None]] = set()
        self._stopped = False

    @property
    def queue_name(self) -> str:
        return self._queue_name

    async def run(self, job: QueueJob) -> None:
        """Handle one pushed job; raises what the handler raises (the broker retries)."""
        async with self._slots:
            task = asyncio.create_task(self._call(job))
            self._in_flight.add(task)
            try:
                await asyncio.shield(task)
            finally:
                self._in_flight.discard(task)

    async def _call(self, job: QueueJob) -> None:
        await self._handler([job])

    async def stop(self) -> None:
        """Unregister (new pushes get 503), then wait for in-flight handlers.

        Cancelled, it cancels them: their HTTP requests fail and the broker redelivers.
        """
        if not self._stopped:
            self._stopped = True
            self._bridge._unregister(self)
        pending = list(self._in_flight)
        try:
            await asyncio.gather(*pending, return_exceptions=True)
        except asyncio.CancelledError:
            for task in pending:
                task.cancel()
            raise


class PushBridge:
    """Which consumer takes the jobs pushed for each queue in this process."""

    def __init__(self) -> None:
        self._consumers: dict[str, list[PushConsumer]] = {}
        self._turn = itertools.count()

    def register(self, queue_name: str, handler: BatchHandler, limit: int) -> PushConsumer:
        consumer = PushConsumer(self, queue_name, handler, limit)
        self._consumers.setdefault(queue_name, []).append(consumer)
        return consumer

    def _unregister(self, consumer: PushConsumer) -> None:
        consumers = self._consumers.get(consumer.queue_name, [])
        if consumer in consumers:
            consumers.remove(consumer)

    def has_consumer(self, queue_name: str) -> bool:
        return bool(self._consumers.get(queue_name))

    async def deliver(self, job: QueueJob) -> None:
        """Hand ``job`` to a consumer of its queue (round robin).

        Raises:
            NoConsumerError: nobody consumes ``job.queue`` here (yet).
            Exception: whatever the handler raised.
        """
        consumers = self._consumers.get(job.queue)
        if not consumers:
            raise NoConsumerError(f"no consumer of {job.queue!r} in this process")
        await consumers[next(self._turn) % len(consumers)].run(job)
