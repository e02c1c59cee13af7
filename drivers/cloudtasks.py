"""The Cloud Tasks driver: the queue port on GCP Cloud Tasks, which pushes HTTP to us.

Why a push driver looks like this: Cloud Tasks has no pull API for HTTP tasks. Producing
is a ``CreateTask`` per job (an HTTP POST of ``{"name", "data"}`` to
``<WORKFLOW_CLOUDTASKS_TARGET_BASE_URL>/internal/queues/<queue>``); consuming is the API
process answering those POSTs. ``consume``/``consume_batches`` register the handler with
a :class:`~statefleet.drivers.push.PushBridge` that ``statefleet.api.routes.internal``
calls, so the worker code is the same as under BullMQ.

Dedupe: the task name is the SHA-256 of the dedupe key (Cloud Tasks allows only
letters, digits, ``-`` and ``_``, and recommends well-spread names), and
``ALREADY_EXISTS`` counts as success. Cloud Tasks keeps a name reserved for about an
hour; the emulator does not dedupe at all, so apply-once comes from the engine's event
ids and task claims, never from the broker. Delays become ``scheduleTime``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import orjson
from google.api_core.exceptions import AlreadyExists
from google.cloud import tasks_v2

from statefleet.drivers.push import PushBridge
from statefleet.engine.ports import (
    BatchHandler,
    Consumer,
    JobHandler,
    QueueClosedError,
    QueueJob,
)

__all__ = [
    "CloudTasksConfig",
    "CloudTasksConfigError",
    "CloudTasksQueue",
    "cloudtasks_queue_from_env",
    "task_id_for",
]

QUEUE_SECRET_HEADER: Final = "X-Queue-Secret"
_CREATE_CONCURRENCY: Final = 32


class CloudTasksConfigError(ValueError):
    """A required Cloud Tasks variable is missing; raised at startup, naming it."""


def task_id_for(dedupe_key: str) -> str:
    """The Cloud Tasks task id of a dedupe key: its SHA-256, hex (valid, well spread)."""
    return hashlib.sha256(dedupe_key.encode()).hexdigest()


class CloudTasksConfig:
    """Everything the driver reads from the environment, validated once at startup."""

    def __init__(
        self,
        *,
        project: str,
        location: str,
        target_base_url: str,
        queue_prefix: str = "",
        service_account: str | None = None,
        queue_secret: str | None = None,
        emulator_host: str | None = None,
        oidc_audience: str | None = None,
    ) -> None:
        self.project = project
        self.location = location
        self.target_base_url = target_base_url.rstrip("/")
        self.queue_prefix = queue_prefix
        self.service_account = service_account
        self.queue_secret = queue_secret
        self.emulator_host = emulator_host
        #: The audience of the OIDC tokens Cloud Tasks attaches: what the receiving
        #: worker checks (``WORKFLOW_CLOUDTASKS_OIDC_AUDIENCE``, else the target URL).
        self.oidc_audience = oidc_audience or self.target_base_url

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> CloudTasksConfig:
        """The ``WORKFLOW_CLOUDTASKS_*`` variables (docs/configuration.md); each missing
        required one is an error naming it.

        Raises:
            CloudTasksConfigError: ``GOOGLE_CLOUD_PROJECT``, ``WORKFLOW_CLOUDTASKS_LOCATION``
                or ``WORKFLOW_CLOUDTASKS_TARGET_BASE_URL`` is unset or empty.
        """

        def get(name: str) -> str:
            return env.get(name, "").strip()

        required = (
            "GOOGLE_CLOUD_PROJECT",
            "WORKFLOW_CLOUDTASKS_LOCATION",
            "WORKFLOW_CLOUDTASKS_TARGET_BASE_URL",
        )
        missing = [name for name in required if not get(name)]
        if missing:
            raise CloudTasksConfigError(
                "the cloudtasks queue driver needs " + ", ".join(missing) + " (see docs/drivers.md)"
            )
        prefix = env.get("WORKFLOW_CLOUDTASKS_QUEUE_PREFIX")
        if prefix is None:
            app_env = get("APP_ENV")
            prefix = f"{app_env}-" if app_env else ""
        return cls(
            project=get("GOOGLE_CLOUD_PROJECT"),
            location=get("WORKFLOW_CLOUDTASKS_LOCATION"),
            target_base_url=get("WORKFLOW_CLOUDTASKS_TARGET_BASE_URL"),
            queue_prefix=prefix.strip(),
            service_account=get("WORKFLOW_CLOUDTASKS_SERVICE_ACCOUNT") or None,
            queue_secret=get("WORKFLOW_QUEUE_SECRET") or None,
            emulator_host=get("WORKFLOW_CLOUDTASKS_EMULATOR_HOST") or None,
            oidc_audience=get("WORKFLOW_CLOUDTASKS_OIDC_AUDIENCE") or None,
        )


class CloudTasksQueue:
    """The Cloud Tasks driver; see the module docstring and the queue port's obligations.

    The gRPC client is opened lazily inside the running event loop (an asyncio gRPC
    channel belongs to one loop). ``push_bridge`` is what the HTTP routes deliver to.
    """

    def __init__(self, config: CloudTasksConfig, *, bridge: PushBridge | None = None) -> None:
        self.config = config
        self.push_bridge = bridge or PushBridge()
        self._client: tasks_v2.CloudTasksAsyncClient | None = None
        self._consumers: set[Consumer] = set()
        self._closed = False

    def queue_path(self, queue_name: str) -> str:
        """``projects/<p>/locations/<l>/queues/<prefix><queue>``."""
        return tasks_v2.CloudTasksAsyncClient.queue_path(
            self.config.project, self.config.location, self.config.queue_prefix + queue_name
        )

    def client(self) -> tasks_v2.CloudTasksAsyncClient:
        """The gRPC client: insecure and anonymous against the emulator."""
        if self._client is None:
            host = self.config.emulator_host
            if host:
                import grpc  # type: ignore[import-untyped]  # no stubs installed
                from google.cloud.tasks_v2.services.cloud_tasks.transports import (
                    CloudTasksGrpcAsyncIOTransport,
                )

                channel = grpc.aio.insecure_channel(host)
                transport = CloudTasksGrpcAsyncIOTransport(channel=channel)
                self._client = tasks_v2.CloudTasksAsyncClient(transport=transport)
            else:
                self._client = tasks_v2.CloudTasksAsyncClient()
        return self._client

    # ----------------------------------------------------------------- producing

    async def enqueue(self, job: QueueJob, *, delay_ms: int = 0) -> None:
        """See :meth:`statefleet.engine.ports.Queue.enqueue`: one ``CreateTask``."""
        if delay_ms < 0:
            raise ValueError(f"delay_ms must not be negative, got {delay_ms}")
        self._check_open()
        await self._create(self._task(job, delay_ms), job.queue)

    async def enqueue_many(self, jobs: Iterable[QueueJob]) -> None:
        """See :meth:`statefleet.engine.ports.Queue.enqueue_many`: concurrent creates.

        Every job is serialised before any is sent, so a bad job adds nothing.
        """
        self._check_open()
        seen: set[tuple[str, str]] = set()
        tasks: list[tuple[tasks_v2.Task, str]] = []
        for job in jobs:
            task = self._task(job, 0)
            if job.dedupe_key is not None:
                if (job.queue, job.dedupe_key) in seen:
                    continue
                seen.add((job.queue, job.dedupe_key))
            tasks.append((task, job.queue))
        slots = asyncio.Semaphore(_CREATE_CONCURRENCY)

        async def create(task: tasks_v2.Task, queue_name: str) -> None:
            async with slots:
                await self._create(task, queue_name)

        await asyncio.gather(*(create(task, queue) for task, queue in tasks))

    def _task(self, job: QueueJob, delay_ms: int) -> tasks_v2.Task:
        # orjson refuses what JSON would silently change (non-string keys, objects).
        body = orjson.dumps({"name": job.name, "data": job.data})
        url = f"{self.config.target_base_url}/internal/queues/{job.queue}"
        headers = {"Content-Type": "application/json"}
        if self.config.queue_secret:
            headers[QUEUE_SECRET_HEADER] = self.config.queue_secret
        request: dict[str, Any] = {
            "url": url,
            "http_method": tasks_v2.HttpMethod.POST,
            "headers": headers,
            "body": body,
        }
        if self.config.service_account:
            request["oidc_token"] = tasks_v2.OidcToken(
                service_account_email=self.config.service_account,
                audience=self.config.oidc_audience,
            )
        task = tasks_v2.Task(http_request=tasks_v2.HttpRequest(**request))
        due = datetime.now(UTC) + timedelta(milliseconds=delay_ms)
        if job.run_at is not None and job.run_at > due:
            due = job.run_at
        if delay_ms > 0 or job.run_at is not None:
            task.schedule_time = due  # proto-plus marshals an aware datetime
        if job.dedupe_key is not None:
            task.name = f"{self.queue_path(job.queue)}/tasks/{task_id_for(job.dedupe_key)}"
        return task

    async def _create(self, task: tasks_v2.Task, queue_name: str) -> None:
        # ALREADY_EXISTS: the same dedupe key; a duplicate create is a no-op by contract.
        with contextlib.suppress(AlreadyExists):
            await self.client().create_task(parent=self.queue_path(queue_name), task=task)

    # ----------------------------------------------------------------- consuming

    async def consume(self, queue_name: str, handler: JobHandler, *, concurrency: int) -> Consumer:
        """See :meth:`statefleet.engine.ports.Queue.consume`: registers with the bridge."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._check_open()

        async def one(jobs: list[QueueJob]) -> None:
            for job in jobs:
                await handler(job)

        consumer = self.push_bridge.register(queue_name, one, concurrency)
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
        """See :meth:`statefleet.engine.ports.Queue.consume_batches`.

        Each push carries one job, so batches have one job each; ``concurrency`` bounds
        how many pushed requests run the handler at once (``max_batch_size`` times it,
        as the other drivers hold that many jobs in flight).
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must not be negative, got {max_wait_ms}")
        self._check_open()
        consumer = self.push_bridge.register(queue_name, handler, max_batch_size * concurrency)
        self._consumers.add(consumer)
        return consumer

    async def close(self) -> None:
        """See :meth:`statefleet.engine.ports.Queue.close`; also closes the gRPC channel."""
        self._closed = True
        consumers, self._consumers = list(self._consumers), set()
        await asyncio.gather(*(consumer.stop() for consumer in consumers))
        client, self._client = self._client, None
        if client is not None:
            await client.transport.close()  # type: ignore[no-untyped-call]

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosedError("the cloudtasks queue driver was closed")


def cloudtasks_queue_from_env(env: Mapping[str, str]) -> CloudTasksQueue:
    """The Cloud Tasks driver configured by its variables (``CloudTasksConfig``).

    Raises:
        CloudTasksConfigError: a required variable is missing (named in the message).
    """
    return CloudTasksQueue(CloudTasksConfig.from_env(env))
