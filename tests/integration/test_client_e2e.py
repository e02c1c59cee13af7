"""The client against the real app, in-process (``httpx.ASGITransport``), on real Postgres.

``create_app(ApiSettings)`` gives a FastAPI app whose lifespan opens the pool and the
queue; each test's tenants are created through the admin route of ``docs/api.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from statefleet.api import app as api_app
from statefleet.api import settings as api_settings
from statefleet.client import AsyncClient, Conflict, InvalidRequest, NotFound

HELLO = orjson.loads((Path(__file__).parents[1] / "fixtures" / "hello-workflow.json").read_bytes())
ADMIN_KEY = "sf-admin-test"
#: start -> a HUMAN task "approve"; completing it sends APPROVED -> done.
APPROVAL = {
    "id": "approval",
    "initial": "waiting",
    "states": {
        "waiting": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {"type": "HUMAN", "name": "approve", "completionEvent": "APPROVED"},
                }
            ],
            "on": {"APPROVED": {"target": "done"}},
        },
        "done": {"type": "final"},
    },
}

PING = {
    "id": "ping",
    "initial": "waiting",
    "states": {"waiting": {"on": {"PING": "done"}}, "done": {"type": "final"}},
}

ClientFactory = Callable[[], AsyncClient]


@pytest_asyncio.fixture
async def app_client(database_dsn: str) -> AsyncIterator[ClientFactory]:
    """Makes clients for fresh tenants of one running app."""
    settings = api_settings.ApiSettings(database_url=database_dsn, admin_key=ADMIN_KEY)
    app: Any = api_app.create_app(settings)
    transport = httpx.ASGITransport(app=app)
    clients: list[AsyncClient] = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://sf.test") as admin,
    ):

        async def tenant_key(name: str) -> str:
            answer = await admin.post(
                "/v1/admin/tenants",
                json={"name": name},
                headers={"Authorization": f"Bearer {ADMIN_KEY}"},
            )
            assert answer.status_code == 201, answer.text
            key: str = answer.json()["apiKey"]
            return key

        keys = [await tenant_key(f"tenant-{n}") for n in range(2)]

        def make(n: int = 0) -> AsyncClient:
            client = AsyncClient("http://sf.test", keys[n], transport=transport)
            clients.append(client)
            return client

        try:
            yield make
        finally:
            for client in clients:
                await client.aclose()


async def test_deploy_start_send_and_read_history(app_client: ClientFactory) -> None:
    client = app_client()
    definition = await client.deploy(HELLO)
    assert (definition.key, definition.version) == ("hello-workflow", 1)
    assert (await client.deploy(HELLO)).version == 1  # same spec: same version
    assert [d.key for d in await client.definitions()] == ["hello-workflow"]
    assert "stateDiagram-v2" in await client.graph("hello-workflow")

    # The event flow uses a spec whose only step waits for PING, so the outcome does not
    # depend on whether the automatic WORKFLOW_START is applied before or after it.
    await client.deploy(PING)
    started = await client.start("ping", {"name": "Ada"}, idempotency_key="k1")
    again = await client.start("ping", {"name": "Ada"}, idempotency_key="k1")
    assert again.id == started.id
    assert started.tenant_id

    await client.send(started.id, "PING", event_id="e1")
    await client.send(started.id, "PING", event_id="e1")  # accepted, applied once
    finished = await client.wait(started.id, timeout=30, poll_interval=0.05)
    assert (finished.status, finished.context) == ("done", {"name": "Ada"})
    entries = [entry async for entry in client.history(started.id, page_size=1)]
    assert [e.seq for e in entries] == list(range(len(entries)))
    assert [e.type for e in entries].count("PING") == 1
    assert (entries[0].type, entries[-1].type) == ("xstate.init", "PING")
    assert [i.id async for i in client.list(definition_key="ping")] == [started.id]
    with pytest.raises(Conflict) as caught:
        await client.send(started.id, "PING")
    assert caught.value.code == "instance_finished"


async def test_human_task_completes_the_instance(app_client: ClientFactory) -> None:
    client = app_client()
    await client.deploy(APPROVAL)
    started = await client.start("approval")
    [task] = await client.tasks(started.id)
    assert (task.type, task.status) == ("HUMAN", "pending")
    completed = await client.complete_task(task.id, {"by": "ada"})
    assert completed.id == task.id
    assert (await client.wait(started.id, timeout=30, poll_interval=0.05)).status == "done"
    with pytest.raises(Conflict):
        await client.complete_task(task.id, None)


async def test_errors_carry_the_api_codes(app_client: ClientFactory) -> None:
    client, other = app_client(0), app_client(1)
    with pytest.raises(InvalidRequest) as caught:
        await client.deploy({"id": "x", "initial": "nope", "states": {"a": {}}})
    assert caught.value.code == "invalid_spec"
    assert caught.value.details
    with pytest.raises(NotFound) as missing:
        await client.start("no-such-definition")
    assert missing.value.code == "unknown_definition"
    await client.deploy(HELLO)
    mine = await client.start("hello-workflow")
    with pytest.raises(NotFound):  # another tenant's id is not found, never forbidden
        await other.get(mine.id)


async def test_start_many_and_batch_progress(app_client: ClientFactory) -> None:
    client = app_client()
    await client.deploy(HELLO)
    started = await client.start_many(
        "hello-workflow", ({"n": n} for n in range(25)), chunk_size=10
    )
    assert [b.count for b in started] == [10, 10, 5]
    progress = await client.batch(started[0].batch_id)
    assert progress.total == 10


async def test_an_app_with_its_own_worker_reports_engine_metrics(database_dsn: str) -> None:
    settings = api_settings.ApiSettings(database_url=database_dsn, admin_key=ADMIN_KEY)
    app: Any = api_app.create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://sf.test") as http,
    ):
        made = await http.post(
            "/v1/admin/tenants",
            json={"name": "metrics"},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        )
        async with AsyncClient("http://sf.test", made.json()["apiKey"], transport=transport) as c:
            await c.deploy(PING)
            started = await c.start("ping")
            await c.send(started.id, "PING")
            await c.wait(started.id, timeout=30, poll_interval=0.05)
        text = (await http.get("/metrics")).text

    assert 'statefleet_events_total{outcome="applied"}' in text
    assert "statefleet_step_batch_seconds_count" in text
