"""The Cloud Tasks driver end to end: the real emulator pushes HTTP to our app.

Also the push route's answers (``statefleet.api.routes.internal``): 401 without the
secret (touching nothing), dead letter + 2xx for a malformed body, 5xx when the
handler fails, and the separation of queue secret and tenant API keys.
"""

from __future__ import annotations

import asyncio
import json
import pathlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cloudtasks_emulator import emulator_for_tests
from cloudtasks_support import cloudtasks_engine
from runtime_support import smtp_server, wait_for

from statefleet.api.oidc import OidcVerifier
from statefleet.drivers.cloudtasks import CloudTasksConfigError, task_id_for
from statefleet.drivers.config import create_queue
from statefleet.engine.handlers import HandlerRegistry
from statefleet.engine.ports import ORCHESTRATOR_QUEUE, QueueJob, event_job

HERE = pathlib.Path(__file__).parent
HELLO = json.loads((HERE.parent / "fixtures" / "hello-workflow.json").read_text())
TENANT = "acme"
SECRET = "s3cret"


@pytest.fixture(scope="session")
def cloudtasks_emulator() -> Iterator[str]:
    with emulator_for_tests() as host:
        yield host


async def test_hello_workflow_runs_through_the_cloud_tasks_emulator(
    database_dsn: str, cloudtasks_emulator: str
) -> None:
    with smtp_server() as (inbox, smtp):
        registry = HandlerRegistry.with_builtins(smtp, entry_points_group=None)
        async with cloudtasks_engine(database_dsn, registry, cloudtasks_emulator) as engine:
            await engine.service.deploy(TENANT, HELLO)
            started = await engine.service.start(TENANT, "hello-workflow", {"greeted": False})
            view = await wait_for(engine.service, TENANT, started.instance_id, timeout=60)
            history = await engine.service.history(TENANT, started.instance_id)

    assert (view.status, view.value) == ("done", "done")
    assert [h["type"] for h in history] == ["xstate.init", "WORKFLOW_START", "HELLO_SENT"]
    assert len(inbox.messages) == 1


async def test_a_duplicate_push_is_applied_once(
    database_dsn: str, cloudtasks_emulator: str
) -> None:
    """The emulator does not dedupe task names, so this is the engine's own apply-once."""
    counter: dict[str, Any] = {
        "id": "counter",
        "initial": "c",
        "context": {"n": 0},
        "states": {
            "c": {
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
    async with cloudtasks_engine(database_dsn, HandlerRegistry(), cloudtasks_emulator) as engine:
        await engine.service.deploy(TENANT, counter)
        started = await engine.service.start(TENANT, "counter", {}, start_event=None)
        jobs = [
            event_job(
                tenant_id=TENANT,
                instance_id=str(started.instance_id),
                event_id=event_id,
                event_type="INC",
            )
            for event_id in ("e1", "e1", "e2")
        ]
        for job in jobs:  # one by one: enqueue_many would collapse the duplicate itself
            await engine.queue.enqueue(job)
        await engine.queue.enqueue(jobs[0])
        await wait_for(engine.service, TENANT, started.instance_id, lambda v: v.context["n"] >= 2)
        # A third event after the duplicates proves they were all handled before it.
        await engine.queue.enqueue(
            event_job(
                tenant_id=TENANT,
                instance_id=str(started.instance_id),
                event_id="e3",
                event_type="INC",
            )
        )
        view = await wait_for(
            engine.service, TENANT, started.instance_id, lambda v: v.context["n"] >= 3, timeout=60
        )
        history = await engine.service.history(TENANT, started.instance_id)
    assert view.context == {"n": 3}
    assert [h["type"] for h in history] == ["xstate.init", "INC", "INC", "INC"]


async def test_push_route_answers_per_the_contract(
    database_dsn: str, cloudtasks_emulator: str
) -> None:
    async with cloudtasks_engine(database_dsn, HandlerRegistry(), cloudtasks_emulator) as engine:
        url = f"{engine.base_url}/internal/queues/{ORCHESTRATOR_QUEUE}"
        good = {
            "name": "event",
            "data": {
                "tenantId": TENANT,
                "instanceId": str(uuid.uuid4()),
                "event": {"id": "x1", "type": "GO"},
            },
        }
        async with httpx.AsyncClient() as http:
            # No secret, a wrong one, or a tenant-style bearer key: 401, nothing recorded.
            no_secret = await http.post(url, json={"name": "event", "data": 1})
            wrong = await http.post(
                url, json={"name": "event", "data": 1}, headers={"X-Queue-Secret": "nope"}
            )
            bearer = await http.post(url, json=good, headers={"Authorization": f"Bearer {SECRET}"})
            async with engine.pool.acquire() as connection:
                dead_before = await connection.fetchval("SELECT count(*) FROM dead_letters")
            # Malformed: dead-lettered, then acknowledged so Cloud Tasks stops retrying.
            malformed = await http.post(
                url,
                content=b'{"name": "event", "data": {"tenantId": 7}}',
                headers={"X-Queue-Secret": SECRET, "Content-Type": "application/json"},
            )
            not_json = await http.post(url, content=b"{", headers={"X-Queue-Secret": SECRET})
            # An integer beyond 64 bits would turn into a float: refused by the API's reader.
            too_big = await http.post(
                url,
                content=b'{"name": "event", "data": {"tenantId": "t", "instanceId": "i", '
                b'"event": {"id": "x2", "type": "GO", "payload": {"n": 18446744073709551616}}}}',
                headers={"X-Queue-Secret": SECRET},
            )
            # Well-formed, for an instance that does not exist: done (nothing to do).
            unknown = await http.post(url, json=good, headers={"X-Queue-Secret": SECRET})
            # The worker serves no tenant route at all, whatever the headers.
            tenant = await http.get(
                f"{engine.base_url}/v1/instances", headers={"X-Queue-Secret": SECRET}
            )
            async with engine.pool.acquire() as connection:
                dead = await connection.fetch("SELECT queue, reason FROM dead_letters")

    assert [no_secret.status_code, wrong.status_code, bearer.status_code] == [401, 401, 401]
    assert dead_before == 0
    assert 200 <= malformed.status_code < 300
    assert 200 <= not_json.status_code < 300
    assert 200 <= too_big.status_code < 300
    assert 200 <= unknown.status_code < 300
    assert tenant.status_code == 404
    assert [r["queue"] for r in dead] == [ORCHESTRATOR_QUEUE] * 3
    reasons = sorted(r["reason"] for r in dead)
    assert reasons[0].startswith("body is not JSON: data.event.payload.n: the integer")
    assert reasons[1].startswith("body is not JSON: the request body is not valid JSON")
    assert reasons[2].startswith("data.tenantId must be a string")


async def test_a_failing_handler_answers_5xx_so_cloud_tasks_retries(
    database_dsn: str, cloudtasks_emulator: str
) -> None:
    async with cloudtasks_engine(database_dsn, HandlerRegistry(), cloudtasks_emulator) as engine:
        await engine.engine.stop()  # replace the worker's consumer by a failing one

        async def fail(jobs: list[Any]) -> None:
            raise RuntimeError("database down")

        consumer = await engine.queue.consume_batches(
            ORCHESTRATOR_QUEUE, fail, max_batch_size=1, max_wait_ms=0
        )
        body = {
            "name": "event",
            "data": {"tenantId": TENANT, "instanceId": "i", "event": {"id": "e", "type": "GO"}},
        }
        async with httpx.AsyncClient() as http:
            url = f"{engine.base_url}/internal/queues/{ORCHESTRATOR_QUEUE}"
            failed = await http.post(url, json=body, headers={"X-Queue-Secret": SECRET})
            await consumer.stop()
            nobody = await http.post(url, json=body, headers={"X-Queue-Secret": SECRET})
    assert failed.status_code == 500
    assert nobody.status_code == 503


def test_each_missing_required_variable_is_named_at_startup() -> None:
    env = {"WORKFLOW_QUEUE_DRIVER": "cloudtasks"}
    with pytest.raises(CloudTasksConfigError) as error:
        create_queue(env)
    for name in (
        "GOOGLE_CLOUD_PROJECT",
        "WORKFLOW_CLOUDTASKS_LOCATION",
        "WORKFLOW_CLOUDTASKS_TARGET_BASE_URL",
    ):
        assert name in str(error.value)
    env |= {"GOOGLE_CLOUD_PROJECT": "p", "WORKFLOW_CLOUDTASKS_LOCATION": "l"}
    with pytest.raises(CloudTasksConfigError, match="WORKFLOW_CLOUDTASKS_TARGET_BASE_URL"):
        create_queue(env)


def test_queue_names_prefix_and_task_names() -> None:
    env = {
        "WORKFLOW_QUEUE_DRIVER": "cloudtasks",
        "GOOGLE_CLOUD_PROJECT": "p",
        "WORKFLOW_CLOUDTASKS_LOCATION": "europe-west1",
        "WORKFLOW_CLOUDTASKS_TARGET_BASE_URL": "https://worker.example/",
        "APP_ENV": "staging",
    }
    queue = create_queue(env)
    assert queue.queue_path(ORCHESTRATOR_QUEUE) == (  # type: ignore[attr-defined]
        "projects/p/locations/europe-west1/queues/staging-workflow-orchestrator"
    )
    explicit = create_queue(env | {"WORKFLOW_CLOUDTASKS_QUEUE_PREFIX": "acme-"})
    assert explicit.queue_path("q").endswith("/queues/acme-q")  # type: ignore[attr-defined]
    name = task_id_for("evt:1")
    assert name == task_id_for("evt:1") != task_id_for("evt:2")
    assert name.isalnum()
    assert len(name) == 64


async def test_a_delayed_job_is_not_pushed_before_its_schedule_time(
    database_dsn: str, cloudtasks_emulator: str
) -> None:
    async with cloudtasks_engine(database_dsn, HandlerRegistry(), cloudtasks_emulator) as engine:
        await engine.engine.stop()
        loop = asyncio.get_running_loop()
        arrived: asyncio.Future[tuple[float, list[QueueJob]]] = loop.create_future()

        async def record(jobs: list[QueueJob]) -> None:
            if not arrived.done():
                arrived.set_result((loop.time(), jobs))

        consumer = await engine.queue.consume_batches(
            ORCHESTRATOR_QUEUE, record, max_batch_size=1, max_wait_ms=0
        )
        job = event_job(tenant_id=TENANT, instance_id="i", event_id="late", event_type="GO")
        sent = loop.time()
        await engine.queue.enqueue(job, delay_ms=500)
        async with asyncio.timeout(60):
            at, jobs = await arrived
        await consumer.stop()
    assert at - sent >= 0.5 - 0.005
    assert [(j.queue, j.name, j.data) for j in jobs] == [(job.queue, job.name, job.data)]


def test_tokens_are_issued_for_the_audience_the_worker_checks() -> None:
    env = {
        "WORKFLOW_QUEUE_DRIVER": "cloudtasks",
        "GOOGLE_CLOUD_PROJECT": "p",
        "WORKFLOW_CLOUDTASKS_LOCATION": "l",
        "WORKFLOW_CLOUDTASKS_TARGET_BASE_URL": "https://worker.example/",
        "WORKFLOW_CLOUDTASKS_SERVICE_ACCOUNT": "pusher@p.iam.gserviceaccount.com",
    }
    default = create_queue(env)
    chosen = create_queue(env | {"WORKFLOW_CLOUDTASKS_OIDC_AUDIENCE": "statefleet-pushes"})
    assert default.config.oidc_audience == "https://worker.example"  # type: ignore[attr-defined]
    assert chosen.config.oidc_audience == "statefleet-pushes"  # type: ignore[attr-defined]
    # The worker checks exactly what the driver issues, trailing slash or not.
    verifier = OidcVerifier.from_env(env)
    assert verifier is not None
    assert verifier.audience == default.config.oidc_audience  # type: ignore[attr-defined]
