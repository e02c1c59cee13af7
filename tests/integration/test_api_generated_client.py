"""A client generated from the served ``/openapi.json`` by ``openapi-python-client`` runs
the hello tour against the real API, over real HTTP, on real Postgres.

What this proves about the document: every model it names is complete enough to build
requests and parse answers (successes and the ``{"error": {...}}`` bodies), every status
the tour meets is declared (the client raises on an undeclared one), the bearer scheme is
what the client's ``AuthenticatedClient`` sends, and the operation ids make a usable API.
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from api_support import ADMIN_KEY, HELLO, running_api

pytestmark = pytest.mark.asyncio

PACKAGE = "statefleet_generated_client"
BIN = Path(sys.executable).parent


def generate(document: dict[str, Any], into: Path) -> None:
    """Runs the generator's CLI as a user would (its post-hooks run ruff from PATH)."""
    spec = into / "openapi.json"
    spec.write_text(json.dumps(document))
    out = str(into / PACKAGE)
    generator = shutil.which("openapi-python-client", path=str(BIN)) or "openapi-python-client"
    subprocess.run(
        [generator, "generate", "--meta", "none", "--path", str(spec), "--output-path", out],
        check=True,
        cwd=into,
        env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def generated_path(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def module(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.{name}")


async def until_done(get: Any, client: Any, instance_id: str) -> Any:
    """Polls the generated ``instances_get`` until the instance leaves ``running``."""
    async with asyncio.timeout(60):
        while True:
            instance = await get.asyncio(instance_id, client=client)
            if instance.status != "running":
                return instance
            await asyncio.sleep(0.05)


async def test_a_generated_client_runs_the_hello_tour(
    database_dsn: str, generated_path: Path
) -> None:
    async with running_api(database_dsn) as api:
        async with httpx.AsyncClient(base_url=api.url) as plain:
            document = (await plain.get("/openapi.json")).json()
        await asyncio.to_thread(generate, document, generated_path)

        root = module("client")
        models = module("models")
        admin = module("api.admin.admin_new_tenant")
        deploy = module("api.definitions.definitions_deploy")
        latest = module("api.definitions.definitions_latest")
        start = module("api.instances.instances_start")
        get = module("api.instances.instances_get")
        send = module("api.instances.instances_send")
        history = module("api.instances.instances_history")
        instance_tasks = module("api.instances.instances_tasks")
        complete = module("api.tasks.tasks_complete")

        def authenticated(token: str) -> Any:
            return root.AuthenticatedClient(
                base_url=api.url, token=token, raise_on_unexpected_status=True
            )

        # A tenant and its key, through the admin route.
        async with authenticated(ADMIN_KEY) as as_admin:
            created = await admin.asyncio_detailed(
                client=as_admin, body=models.TenantIn(name="generated")
            )
        assert created.status_code == 201
        assert isinstance(created.parsed, models.TenantCreated)
        key = created.parsed.api_key

        async with authenticated(key) as client:
            # Deploy the hello definition; deploying it again is the same version (200).
            body = models.DefinitionIn.from_dict({"spec": HELLO})
            deployed = await deploy.asyncio_detailed(client=client, body=body)
            assert deployed.status_code == 201
            assert deployed.parsed.key == "hello-workflow"
            again = await deploy.asyncio_detailed(client=client, body=body)
            assert again.status_code == 200
            assert again.parsed.version == deployed.parsed.version
            read = await latest.asyncio("hello-workflow", client=client)
            assert read.spec.to_dict() == HELLO

            # Start it (EMAIL runs as NOOP here) and wait until it is done.
            started = await start.asyncio_detailed(
                client=client,
                body=models.StartIn.from_dict(
                    {"definitionKey": "hello-workflow", "input": {"greeted": True}}
                ),
            )
            assert started.status_code == 201
            done = await until_done(get, client, str(started.parsed.id))
            assert done.status == "done"
            assert done.value == "done"

            rows = await history.asyncio(str(done.id), client=client)
            assert [r.type_ for r in rows.items] == ["xstate.init", "WORKFLOW_START", "HELLO_SENT"]
            assert [r.state_after for r in rows.items] == ["start", "notify", "done"]
            (task,) = (await instance_tasks.asyncio(str(done.id), client=client)).items
            assert task.name == "send-hello"
            assert task.status == "succeeded"

            # A manual variant: send an event, complete its task from outside.
            manual = copy.deepcopy(HELLO)
            manual["id"] = "hello-manual"
            action = manual["states"]["start"]["on"]["WORKFLOW_START"]["actions"][0]
            action["task"]["type"] = "HUMAN"
            body = models.DefinitionIn.from_dict({"spec": manual})
            assert (await deploy.asyncio_detailed(client=client, body=body)).status_code == 201
            waiting = await start.asyncio(
                client=client,
                body=models.StartIn.from_dict({"definitionKey": "hello-manual"}),
                idempotency_key="tour-1",
            )
            accepted = await send.asyncio_detailed(
                str(waiting.id),
                client=client,
                body=models.EventIn.from_dict({"type": "PING", "id": "ping-1"}),
            )
            assert accepted.status_code == 202
            assert accepted.parsed.event_id == "ping-1"
            async with asyncio.timeout(60):
                while not (await instance_tasks.asyncio(str(waiting.id), client=client)).items:
                    await asyncio.sleep(0.05)
            (human,) = (await instance_tasks.asyncio(str(waiting.id), client=client)).items
            completed = await complete.asyncio_detailed(
                str(human.id),
                client=client,
                body=models.CompleteTaskIn.from_dict({"output": {"sent": True}}),
            )
            assert completed.status_code == 200
            assert completed.parsed.status == "succeeded"
            finished = await until_done(get, client, str(waiting.id))
            assert finished.status == "done"
            types = [r.type_ for r in (await history.asyncio(str(waiting.id), client=client)).items]
            assert types == ["xstate.init", "WORKFLOW_START", "PING", "HELLO_SENT"]

            # Error answers parse as the declared ErrorResponse.
            late = await send.asyncio_detailed(
                str(finished.id), client=client, body=models.EventIn.from_dict({"type": "PING"})
            )
            assert late.status_code == 409
            assert isinstance(late.parsed, models.ErrorResponse)
            assert late.parsed.error.code == "instance_finished"
            missing = await get.asyncio_detailed(str(uuid.uuid4()), client=client)
            assert missing.status_code == 404
            assert missing.parsed.error.code == "unknown_instance"
            broken = models.DefinitionIn.from_dict({"spec": {"id": "a/b", "states": {}}})
            refused = await deploy.asyncio_detailed(client=client, body=broken)
            assert refused.status_code == 422
            assert refused.parsed.error.code == "invalid_spec"
            assert "id" in [d.path for d in refused.parsed.error.details]

        async with authenticated("sf_not_a_key") as stranger:
            denied = await get.asyncio_detailed(str(done.id), client=stranger)
        assert denied.status_code == 401
        assert denied.parsed.error.code == "unauthorized"
