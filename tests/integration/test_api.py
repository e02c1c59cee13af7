"""The v1 HTTP API (docs/api.md) over real HTTP against real Postgres and a running worker."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from api_support import ADMIN_KEY, HELLO, Api, key, running_api

pytestmark = pytest.mark.asyncio

HUMAN: dict[str, Any] = {
    "id": "approval",
    "initial": "waiting",
    "context": {},
    "states": {
        "waiting": {
            "entry": [
                {
                    "type": "createTask",
                    "task": {"type": "HUMAN", "name": "approve", "completionEvent": "APPROVED"},
                }
            ],
            "on": {"APPROVED": "approved"},
        },
        "approved": {"type": "final"},
    },
}

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
                },
                "STOP": "stopped",
            }
        },
        "stopped": {"type": "final"},
    },
}


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert body["error"]["message"], body
    code: str = body["error"]["code"]
    return code


async def wait_status(
    client: httpx.AsyncClient, instance_id: str, statuses: set[str], timeout: float = 30
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        body: dict[str, Any] = (await client.get(f"/v1/instances/{instance_id}")).json()
        if body["status"] in statuses:
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.02)


async def wait_history(
    client: httpx.AsyncClient, instance_id: str, event_type: str, timeout: float = 30
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        items: list[dict[str, Any]] = (
            await client.get(f"/v1/instances/{instance_id}/history")
        ).json()["items"]
        if any(i["type"] == event_type for i in items):
            return items
        assert time.monotonic() < deadline, items
        await asyncio.sleep(0.02)


async def test_definitions_deploy_list_get_and_graph(api: Api) -> None:
    async with api.client(key(api)) as client:
        first = await client.post("/v1/definitions", json={"spec": HELLO})
        assert first.status_code == 201, first.text
        assert first.json()["version"] == 1
        assert first.json()["spec"] == HELLO
        again = await client.post("/v1/definitions", json={"spec": HELLO})
        assert again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        changed = {**HELLO, "context": {"greeted": True}}
        second = await client.post("/v1/definitions", json={"spec": changed})
        assert (second.status_code, second.json()["version"]) == (201, 2)

        listing = (await client.get("/v1/definitions")).json()["items"]
        assert [(d["key"], d["version"]) for d in listing] == [("hello-workflow", 2)]
        assert "spec" not in listing[0]
        assert set(listing[0]) == {"id", "key", "version", "checksum", "createdAt"}
        latest = (await client.get("/v1/definitions/hello-workflow")).json()
        assert latest["version"] == 2
        assert latest["spec"] == changed
        v1 = (await client.get("/v1/definitions/hello-workflow/versions/1")).json()
        assert v1["spec"] == HELLO
        graph = await client.get("/v1/definitions/hello-workflow/graph", params={"version": 1})
        assert graph.status_code == 200
        assert graph.headers["content-type"].startswith("text/plain")
        assert graph.text.startswith("stateDiagram-v2")

        named = await client.post("/v1/definitions", json={"spec": HELLO, "key": "greeter"})
        assert (named.status_code, named.json()["key"]) == (201, "greeter")

        missing = await client.get("/v1/definitions/nope")
        assert (missing.status_code, error_code(missing)) == (404, "unknown_definition")
        no_version = await client.get("/v1/definitions/hello-workflow/versions/9")
        assert (no_version.status_code, error_code(no_version)) == (404, "unknown_version")
        no_graph = await client.get("/v1/definitions/hello-workflow/graph?version=9")
        assert error_code(no_graph) == "unknown_version"


async def test_an_invalid_spec_is_422_with_json_paths(api: Api) -> None:
    bad = {"id": "bad", "initial": "nowhere", "states": {"a": {"on": {"GO": "missing"}}}}
    async with api.client(key(api)) as client:
        response = await client.post("/v1/definitions", json={"spec": bad})
    assert (response.status_code, error_code(response)) == (422, "invalid_spec")
    paths = {d["path"] for d in response.json()["error"]["details"]}
    assert paths, response.json()
    assert all(isinstance(p, str) for p in paths)
    assert any("initial" in p or "states.a" in p for p in paths), paths


async def test_hello_runs_to_done_and_history_reads_back(api: Api) -> None:
    async with api.client(key(api)) as client:
        await client.post("/v1/definitions", json={"spec": HELLO})
        started = await client.post(
            "/v1/instances", json={"definitionKey": "hello-workflow", "input": {"who": "ada"}}
        )
        assert started.status_code == 201, started.text
        body = started.json()
        assert body["tenantId"] == api.tenants["acme"][0]
        assert (body["definitionKey"], body["definitionVersion"]) == ("hello-workflow", 1)
        assert body["batchId"] is None
        done = await wait_status(client, body["id"], {"done"})
        assert done["value"] == "done"

        history = (await client.get(f"/v1/instances/{body['id']}/history")).json()
        types = [h["type"] for h in history["items"]]
        assert types == ["xstate.init", "WORKFLOW_START", "HELLO_SENT"]
        assert history["nextCursor"] is None
        page = (await client.get(f"/v1/instances/{body['id']}/history?limit=2")).json()
        assert [h["seq"] for h in page["items"]] == [0, 1]
        rest = await client.get(
            f"/v1/instances/{body['id']}/history", params={"after": page["nextCursor"]}
        )
        assert [h["seq"] for h in rest.json()["items"]] == [2]

        tasks = (await client.get(f"/v1/instances/{body['id']}/tasks")).json()["items"]
        assert [(t["type"], t["status"]) for t in tasks] == [("EMAIL", "succeeded")]
        task = (await client.get(f"/v1/tasks/{tasks[0]['id']}")).json()
        assert task["instanceId"] == body["id"]
        assert task["completionEvent"] == "HELLO_SENT"

        late = await client.post(f"/v1/instances/{body['id']}/events", json={"type": "X"})
        assert (late.status_code, error_code(late)) == (409, "instance_finished")
        cancel = await client.post(f"/v1/instances/{body['id']}/cancel")
        assert (cancel.status_code, error_code(cancel)) == (409, "instance_finished")


async def test_start_is_idempotent_and_unknown_definitions_are_404(api: Api) -> None:
    async with api.client(key(api)) as client:
        await client.post("/v1/definitions", json={"spec": COUNTER})
        body = {"definitionKey": "counter", "idempotencyKey": "order-1"}
        first = await client.post("/v1/instances", json=body)
        second = await client.post("/v1/instances", json=body)
        assert (first.status_code, second.status_code) == (201, 200)
        assert first.json()["id"] == second.json()["id"]
        unknown = await client.post("/v1/instances", json={"definitionKey": "nope"})
        assert (unknown.status_code, error_code(unknown)) == (404, "unknown_definition")
        bad_version = await client.post(
            "/v1/instances", json={"definitionKey": "counter", "version": 7}
        )
        assert (bad_version.status_code, error_code(bad_version)) == (404, "unknown_version")
        batch = await client.post("/v1/batches", json={"definitionKey": "nope", "inputs": [{}]})
        assert error_code(batch) == "unknown_definition"


async def test_priority_is_taken_checked_and_shown_on_instances_and_batches(api: Api) -> None:
    """A start defaults to 10 (interactive), a batch to 5; both take 0..10 and say it."""
    async with api.client(key(api)) as client:
        await client.post("/v1/definitions", json={"spec": COUNTER})
        plain = await client.post("/v1/instances", json={"definitionKey": "counter"})
        low = await client.post("/v1/instances", json={"definitionKey": "counter", "priority": 0})
        assert (plain.status_code, low.status_code) == (201, 201), (plain.text, low.text)
        assert (plain.json()["priority"], low.json()["priority"]) == (10, 0)
        got = await client.get(f"/v1/instances/{low.json()['id']}")
        assert got.json()["priority"] == 0
        listed = (await client.get("/v1/instances")).json()["items"]
        assert sorted(i["priority"] for i in listed) == [0, 10]

        inputs: list[dict[str, Any]] = [{}, {}]
        default = await client.post(
            "/v1/batches", json={"definitionKey": "counter", "inputs": inputs}
        )
        urgent = await client.post(
            "/v1/batches", json={"definitionKey": "counter", "inputs": inputs, "priority": 8}
        )
        assert (default.status_code, urgent.status_code) == (201, 201), urgent.text
        for started, priority in ((default, 5), (urgent, 8)):
            progress = (await client.get(f"/v1/batches/{started.json()['batchId']}")).json()
            assert (progress["priority"], progress["total"]) == (priority, 2)
        one = (await client.get("/v1/instances", params={"limit": 1})).json()["items"][0]
        assert (one["batchId"], one["priority"]) == (urgent.json()["batchId"], 8)

        # Out of range, a string, a boolean: 400 naming the field; nothing is started.
        before = len((await client.get("/v1/instances")).json()["items"])
        for bad in (11, -1, "3", True, 2.5):
            for path, body in (
                ("/v1/instances", {"definitionKey": "counter", "priority": bad}),
                ("/v1/batches", {"definitionKey": "counter", "inputs": [{}], "priority": bad}),
            ):
                refused = await client.post(path, json=body)
                assert (refused.status_code, error_code(refused)) == (400, "invalid_request"), (
                    path,
                    bad,
                )
                assert refused.json()["error"]["details"][0]["path"] == "priority"
        assert len((await client.get("/v1/instances")).json()["items"]) == before


async def test_tenant_scheduling_through_the_admin_api(api: Api) -> None:
    """GET/PUT ``/v1/admin/tenants/{id}/scheduling``: PUT replaces, bad bodies change nothing."""
    from statefleet.client import AsyncClient, Client, TaskLimit

    acme = api.tenants["acme"][0]
    url = f"/v1/admin/tenants/{acme}/scheduling"
    async with api.client(ADMIN_KEY) as admin:
        fresh = await admin.get(url)
        assert (fresh.status_code, fresh.json()) == (200, {"weight": 1, "taskLimits": {}})
        wanted = {"weight": 3, "taskLimits": {"EMAIL": {"concurrency": 5, "perSecond": 50}}}
        put = await admin.put(url, json=wanted)
        assert (put.status_code, put.json()) == (200, wanted), put.text
        assert (await admin.get(url)).json() == wanted
        # Another tenant keeps the defaults.
        other = f"/v1/admin/tenants/{api.tenants['globex'][0]}/scheduling"
        assert (await admin.get(other)).json() == {"weight": 1, "taskLimits": {}}

        bad_bodies: list[tuple[Any, str]] = [
            ({"weight": 0}, "weight"),
            ({"weight": 1001}, "weight"),
            ({"weight": "3"}, "weight"),
            ({"weight": True}, "weight"),
            ({"weight": 2, "colour": "red"}, "colour"),
            ({"task_limits": {}}, "task_limits"),
            ({"taskLimits": {"EMAIL": {}}}, "taskLimits.EMAIL"),
            ({"taskLimits": {"EMAIL": {"concurrency": 0}}}, "taskLimits.EMAIL.concurrency"),
            ({"taskLimits": {"EMAIL": {"perSecond": 0}}}, "taskLimits.EMAIL.perSecond"),
            ({"taskLimits": {"EMAIL": {"per_second": 1}}}, "taskLimits.EMAIL.per_second"),
            ({"taskLimits": {"EMAIL": 5}}, "taskLimits.EMAIL"),
            (
                {"taskLimits": {"EMAIL": {"concurrency": None, "perSecond": 1}}},
                "taskLimits.EMAIL.concurrency",
            ),
            ([], "body"),
        ]
        for body, path in bad_bodies:
            bad = await admin.put(url, json=body)
            assert (bad.status_code, error_code(bad)) == (400, "invalid_request"), body
            assert path in [d["path"] for d in bad.json()["error"]["details"]], bad.json()
        assert (await admin.get(url)).json() == wanted

        # PUT replaces as a whole: {} is the defaults again.
        reset = await admin.put(url, json={})
        assert reset.json() == {"weight": 1, "taskLimits": {}}

        # Unknown tenants are 404; tenant keys are refused.
        for method in ("GET", "PUT"):
            missing = await admin.request(
                method, "/v1/admin/tenants/nobody/scheduling", json={} if method == "PUT" else None
            )
            assert (missing.status_code, error_code(missing)) == (404, "not_found"), method
    async with api.client(key(api)) as tenant:
        for method in ("GET", "PUT"):
            refused = await tenant.request(method, url, json={"weight": 9})
            assert (refused.status_code, error_code(refused)) == (403, "forbidden"), method
    async with api.client(ADMIN_KEY) as admin:
        assert (await admin.get(url)).json() == {"weight": 1, "taskLimits": {}}

    # The Python clients speak the same routes.
    async with AsyncClient(api.url, ADMIN_KEY) as sf:
        got = await sf.set_tenant_scheduling(
            acme, weight=2, task_limits={"AI": {"concurrency": 1}, "EMAIL": {"perSecond": 2.5}}
        )
        assert got.weight == 2
        assert got.task_limits == {
            "AI": TaskLimit(concurrency=1),
            "EMAIL": TaskLimit(per_second=2.5),
        }
        assert await sf.get_tenant_scheduling(acme) == got

    def sync_round_trip() -> Any:
        with Client(api.url, ADMIN_KEY) as sf:
            kept = sf.get_tenant_scheduling(acme)
            # TaskLimit values go back as they came: the settings survive a round trip.
            again = sf.set_tenant_scheduling(acme, weight=7, task_limits=kept.task_limits)
            return kept, again, sf.set_tenant_scheduling(acme)

    kept, again, cleared = await asyncio.to_thread(sync_round_trip)
    assert (again.weight, again.task_limits) == (7, kept.task_limits)
    assert (cleared.weight, cleared.task_limits) == (1, {})


async def test_send_is_idempotent_by_event_id_and_cancel_stops(api: Api) -> None:
    async with api.client(key(api)) as client:
        await client.post("/v1/definitions", json={"spec": COUNTER})
        instance = (await client.post("/v1/instances", json={"definitionKey": "counter"})).json()
        url = f"/v1/instances/{instance['id']}/events"
        for _ in range(2):
            sent = await client.post(url, json={"type": "INC", "id": "inc-1"})
            assert (sent.status_code, sent.json()) == (202, {"eventId": "inc-1"})
        generated = await client.post(url, json={"type": "INC", "payload": {"by": 1}})
        assert generated.status_code == 202
        generated_id = generated.json()["eventId"]
        history = await wait_history(client, instance["id"], "INC")
        while [h["eventId"] for h in history].count(generated_id) == 0:
            await asyncio.sleep(0.02)
            history = (await client.get(f"/v1/instances/{instance['id']}/history")).json()["items"]
        assert [h["eventId"] for h in history].count("inc-1") == 1
        view = (await client.get(f"/v1/instances/{instance['id']}")).json()
        assert view["context"]["n"] == 2

        cancelled = await client.post(f"/v1/instances/{instance['id']}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        last = (await client.get(f"/v1/instances/{instance['id']}/history")).json()["items"][-1]
        assert last["type"] == "statefleet.instance.cancelled"
        refused = await client.post(url, json={"type": "INC"})
        assert (refused.status_code, error_code(refused)) == (409, "instance_finished")


async def test_list_filters_and_paginates_newest_first(api: Api) -> None:
    async with api.client(key(api)) as client:
        await client.post("/v1/definitions", json={"spec": COUNTER})
        await client.post("/v1/definitions", json={"spec": HUMAN})
        ids = []
        for _ in range(5):
            ids.append(
                (await client.post("/v1/instances", json={"definitionKey": "counter"})).json()["id"]
            )
        other = (await client.post("/v1/instances", json={"definitionKey": "approval"})).json()
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"definitionKey": "counter", "limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await client.get("/v1/instances", params=params)).json()
            seen += [i["id"] for i in page["items"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert seen == list(reversed(ids))
        everything = (await client.get("/v1/instances")).json()["items"]
        assert everything[0]["id"] == other["id"]
        running = (await client.get("/v1/instances", params={"status": "done"})).json()
        assert running["items"] == []
        future = (
            await client.get("/v1/instances", params={"createdAfter": "2999-01-01T00:00:00Z"})
        ).json()
        assert future["items"] == []
        bad_cursor = await client.get("/v1/instances", params={"cursor": "garbage"})
        assert (bad_cursor.status_code, error_code(bad_cursor)) == (400, "invalid_request")
        bad_status = await client.get("/v1/instances", params={"status": "asleep"})
        assert (bad_status.status_code, error_code(bad_status)) == (400, "invalid_request")


async def test_human_tasks_complete_fail_and_retry(api: Api) -> None:
    async with api.client(key(api)) as client:
        await client.post("/v1/definitions", json={"spec": HUMAN})

        async def open_task() -> tuple[str, str]:
            instance = (
                await client.post("/v1/instances", json={"definitionKey": "approval"})
            ).json()
            (task,) = (await client.get(f"/v1/instances/{instance['id']}/tasks")).json()["items"]
            assert (task["type"], task["status"]) == ("HUMAN", "pending")
            # The API commits the instance's first step (which opens the task) itself;
            # the engine applies WORKFLOW_START after it. Wait for it, so that what the
            # test does next comes after the start in the instance's history.
            await wait_history(client, instance["id"], "WORKFLOW_START")
            return instance["id"], task["id"]

        instance_id, task_id = await open_task()
        done = await client.post(f"/v1/tasks/{task_id}/complete", json={"output": {"ok": 1}})
        assert (done.status_code, done.json()["status"]) == (200, "succeeded")
        assert done.json()["output"] == {"ok": 1}
        assert (await wait_status(client, instance_id, {"done"}))["value"] == "approved"
        twice = await client.post(f"/v1/tasks/{task_id}/complete", json={"output": 1})
        assert (twice.status_code, error_code(twice)) == (409, "task_not_completable")
        not_failed = await client.post(f"/v1/tasks/{task_id}/retry")
        assert (not_failed.status_code, error_code(not_failed)) == (409, "task_not_completable")

        # No failureEvent: failing the task fails the instance; retrying reopens it.
        instance_id, task_id = await open_task()
        failed = await client.post(f"/v1/tasks/{task_id}/fail", json={"error": "rejected"})
        assert failed.status_code == 200, failed.text
        assert (failed.json()["status"], failed.json()["lastError"]) == ("failed", "rejected")
        stopped = (await client.get(f"/v1/instances/{instance_id}")).json()
        assert stopped["status"] == "failed"
        assert "rejected" in stopped["error"]
        retried = await client.post(f"/v1/tasks/{task_id}/retry")
        assert (retried.status_code, retried.json()["status"]) == (200, "pending")
        reopened = (await client.get(f"/v1/instances/{instance_id}")).json()
        assert (reopened["status"], reopened["error"]) == ("running", None)
        history = (await client.get(f"/v1/instances/{instance_id}/history")).json()["items"]
        assert [h["type"] for h in history][-2:] == [
            "statefleet.task.failed",
            "statefleet.task.retried",
        ]
        await client.post(f"/v1/tasks/{task_id}/complete", json={"output": None})
        await wait_status(client, instance_id, {"done"})

        missing = await client.get(f"/v1/tasks/{uuid.uuid4()}")
        assert (missing.status_code, error_code(missing)) == (404, "unknown_task")
        malformed = await client.post("/v1/tasks/not-a-uuid/complete", json={"output": 1})
        assert (malformed.status_code, error_code(malformed)) == (404, "unknown_task")


async def test_auth_failures_are_401_and_admin_is_separate(api: Api) -> None:
    async with api.client() as anonymous:
        response = await anonymous.get("/v1/definitions")
        assert (response.status_code, error_code(response)) == (401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"
        assert (await anonymous.get("/healthz")).json() == {"status": "ok"}
        assert (await anonymous.get("/readyz")).status_code == 200
    for bad in ("nonsense", "sf_0123456789abcdef_" + "A" * 43, key(api)[:-1] + "x"):
        async with api.client(bad) as client:
            response = await client.get("/v1/definitions")
            assert (response.status_code, error_code(response)) == (401, "unauthorized"), bad
    async with api.client(key(api)) as tenant:
        response = await tenant.get(f"/v1/admin/tenants/{api.tenants['acme'][0]}/keys")
        assert (response.status_code, error_code(response)) == (403, "forbidden")
    async with api.client(ADMIN_KEY) as admin:
        response = await admin.get("/v1/definitions")
        assert (response.status_code, error_code(response)) == (403, "forbidden")
        created = await admin.post("/v1/admin/tenants", json={"name": "Initech"})
        assert created.status_code == 201
        tenant_id, first_key = created.json()["tenantId"], created.json()["apiKey"]
        second = await admin.post(f"/v1/admin/tenants/{tenant_id}/keys")
        assert second.status_code == 201
        listed = (await admin.get(f"/v1/admin/tenants/{tenant_id}/keys")).json()["items"]
        assert len(listed) == 2
        key_id = first_key.split("_")[1]
        async with api.client(first_key) as initech:
            assert (await initech.get("/v1/definitions")).status_code == 200
            revoked = await admin.delete(f"/v1/admin/tenants/{tenant_id}/keys/{key_id}")
            assert revoked.status_code == 204
            response = await initech.get("/v1/definitions")
            assert (response.status_code, error_code(response)) == (401, "unauthorized")
        async with api.client(second.json()["apiKey"]) as still:
            assert (await still.get("/v1/definitions")).status_code == 200
        gone = await admin.get("/v1/admin/tenants/nope/keys")
        assert (gone.status_code, error_code(gone)) == (404, "not_found")


async def test_another_tenants_ids_answer_404_everywhere(api: Api) -> None:
    async with api.client(key(api, "acme")) as acme, api.client(key(api, "globex")) as globex:
        await acme.post("/v1/definitions", json={"spec": HUMAN})
        instance = (await acme.post("/v1/instances", json={"definitionKey": "approval"})).json()
        (task,) = (await acme.get(f"/v1/instances/{instance['id']}/tasks")).json()["items"]
        batch = (
            await acme.post("/v1/batches", json={"definitionKey": "approval", "inputs": [{}]})
        ).json()
        iid, tid, bid = instance["id"], task["id"], batch["batchId"]
        expected = {
            ("GET", "/v1/definitions/approval"): "unknown_definition",
            ("GET", "/v1/definitions/approval/versions/1"): "unknown_definition",
            ("GET", "/v1/definitions/approval/graph"): "unknown_definition",
            ("POST", "/v1/instances"): "unknown_definition",
            ("POST", "/v1/batches"): "unknown_definition",
            ("GET", f"/v1/instances/{iid}"): "unknown_instance",
            ("POST", f"/v1/instances/{iid}/events"): "unknown_instance",
            ("POST", f"/v1/instances/{iid}/cancel"): "unknown_instance",
            ("GET", f"/v1/instances/{iid}/history"): "unknown_instance",
            ("GET", f"/v1/instances/{iid}/tasks"): "unknown_instance",
            ("GET", f"/v1/batches/{bid}"): "unknown_batch",
            ("GET", f"/v1/tasks/{tid}"): "unknown_task",
            ("POST", f"/v1/tasks/{tid}/complete"): "unknown_task",
            ("POST", f"/v1/tasks/{tid}/fail"): "unknown_task",
            ("POST", f"/v1/tasks/{tid}/retry"): "unknown_task",
        }
        bodies = {
            "/v1/instances": {"definitionKey": "approval"},
            "/v1/batches": {"definitionKey": "approval", "inputs": [{}]},
            f"/v1/instances/{iid}/events": {"type": "X"},
            f"/v1/tasks/{tid}/complete": {"output": 1},
            f"/v1/tasks/{tid}/fail": {"error": "no"},
        }
        for (method, path), code in expected.items():
            response = await globex.request(method, path, json=bodies.get(path))
            assert (response.status_code, error_code(response)) == (404, code), (method, path)
        assert (await globex.get("/v1/definitions")).json() == {"items": []}
        assert (await globex.get("/v1/instances")).json()["items"] == []
        # ... and nothing changed for acme.
        assert (await acme.get(f"/v1/tasks/{tid}")).json()["status"] == "pending"
        assert (await acme.get(f"/v1/instances/{iid}")).json()["status"] == "running"


async def test_bad_bodies_are_400_or_413_never_500(database_dsn: str) -> None:
    async with (
        running_api(database_dsn, max_body_bytes=2048) as api,
        api.client(key(api)) as client,
    ):
        headers = {"content-type": "application/json"}
        broken = await client.post("/v1/definitions", content=b"{not json", headers=headers)
        assert (broken.status_code, error_code(broken)) == (400, "invalid_json")
        wrong = await client.post("/v1/instances", json={"definition_key": "x"})
        assert (wrong.status_code, error_code(wrong)) == (400, "invalid_request")
        assert "definitionKey" in wrong.json()["error"]["message"]
        not_object = await client.post("/v1/instances", json=[1, 2])
        assert (not_object.status_code, error_code(not_object)) == (400, "invalid_request")
        big = {"spec": {"id": "x" * 5000}}
        too_large = await client.post("/v1/definitions", json=big)
        assert (too_large.status_code, error_code(too_large)) == (413, "payload_too_large")

        async def chunks() -> Any:
            for _ in range(10):
                yield b" " * 1000

        streamed = await client.post("/v1/definitions", content=chunks(), headers=headers)
        assert (streamed.status_code, error_code(streamed)) == (413, "payload_too_large")
        nul = await client.post("/v1/instances", json={"definitionKey": "a\u0000b"})
        assert (nul.status_code, error_code(nul)) == (400, "invalid_request")
        nul_graph = await client.get("/v1/definitions/a%00b/graph")
        assert (nul_graph.status_code, error_code(nul_graph)) == (400, "invalid_request")
        nowhere = await client.get("/v1/nowhere")
        assert (nowhere.status_code, error_code(nowhere)) == (404, "not_found")
        empty = await client.post("/v1/batches", json={"definitionKey": "x", "inputs": []})
        assert (empty.status_code, error_code(empty)) == (400, "invalid_request")


async def test_metrics_and_openapi_are_served(api: Api) -> None:
    async with api.client(key(api)) as client:
        await client.get("/v1/definitions")
        metrics = await client.get("/metrics")
        assert metrics.status_code == 200
        assert 'statefleet_http_requests_total{method="GET",route="/v1/definitions"' in metrics.text
        assert "statefleet_outbox_lag_seconds" in metrics.text
        spec = (await client.get("/openapi.json")).json()
        assert "/v1/batches/{batch_id}" in spec["paths"]


@pytest.mark.slow
async def test_a_batch_of_ten_thousand_starts_in_one_call_and_finishes(api: Api) -> None:
    async with api.client(key(api)) as client:
        await client.post("/v1/definitions", json={"spec": HELLO})
        inputs = [{"n": i} for i in range(10_000)]
        started_at = time.monotonic()
        response = await client.post(
            "/v1/batches", json={"definitionKey": "hello-workflow", "inputs": inputs}
        )
        start_s = time.monotonic() - started_at
        assert response.status_code == 201, response.text
        assert response.json()["count"] == 10_000
        batch_id = response.json()["batchId"]
        while True:
            progress = (await client.get(f"/v1/batches/{batch_id}")).json()
            if progress["counts"]["done"] == 10_000:
                break
            assert progress["counts"]["failed"] == 0, progress
            await asyncio.sleep(0.2)
        finish_s = time.monotonic() - started_at
        assert progress == {
            "batchId": batch_id,
            "total": 10_000,
            "counts": {"running": 0, "done": 10_000, "failed": 0, "cancelled": 0},
            "priority": 5,
        }
        sample = (await client.get("/v1/instances", params={"limit": 1})).json()["items"][0]
        assert sample["batchId"] == batch_id
        print(f"batch of 10,000: started in {start_s:.2f} s, all done after {finish_s:.2f} s")


async def test_operator_cli_creates_tenants_and_manages_keys(database_dsn: str) -> None:
    """``statefleet tenants``/``keys`` straight on the database, as an operator runs them."""
    import orjson
    from click.testing import CliRunner

    from statefleet.commands.api import api as api_command
    from statefleet.commands.tenants import keys, tenants

    runner = CliRunner()
    env = {"DATABASE_URL": database_dsn}

    def invoke(command: Any, *args: str) -> Any:
        result = runner.invoke(command, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result

    created = orjson.loads(
        (await asyncio.to_thread(invoke, tenants, "create", "Umbrella Corp", "--json")).output
    )
    assert created["tenantId"].startswith("umbrella-corp-")
    assert created["apiKey"].startswith("sf_")
    tenant_id = created["tenantId"]
    second = orjson.loads(
        (await asyncio.to_thread(invoke, keys, "create", tenant_id, "--json")).output
    )
    listed = orjson.loads(
        (await asyncio.to_thread(invoke, keys, "list", tenant_id, "--json")).output
    )
    assert [k["keyId"] for k in listed["items"]] == [
        created["apiKey"].split("_")[1],
        second["keyId"],
    ] or len(listed["items"]) == 2
    await asyncio.to_thread(invoke, keys, "revoke", tenant_id, second["keyId"])
    listed = orjson.loads(
        (await asyncio.to_thread(invoke, keys, "list", tenant_id, "--json")).output
    )
    revoked = {k["keyId"]: k["revokedAt"] for k in listed["items"]}
    assert revoked[second["keyId"]] is not None
    missing = await asyncio.to_thread(runner.invoke, keys, ["list", "nope"], env=env)
    assert missing.exit_code == 1
    assert "no tenant 'nope'" in missing.output
    refused = runner.invoke(
        api_command, [], env={"DATABASE_URL": database_dsn, "WORKFLOW_QUEUE_DRIVER": "memory"}
    )
    assert refused.exit_code == 1
    assert "process-local" in refused.output


async def test_operator_cli_sets_tenant_scheduling_on_the_database(
    api: Api, database_dsn: str
) -> None:
    """``statefleet tenants scheduling`` with ``DATABASE_URL``; the admin API reads it back."""
    import orjson
    from click.testing import CliRunner

    from statefleet.commands.tenants import tenants

    acme = api.tenants["acme"][0]
    env = {"DATABASE_URL": database_dsn}

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(tenants, ["scheduling", *args], env=env)

    changed = await asyncio.to_thread(
        invoke, acme, "--weight", "9", "--task-limit", "EMAIL:perSecond=50", "--json"
    )
    assert changed.exit_code == 0, changed.output
    wanted = {"weight": 9, "taskLimits": {"EMAIL": {"perSecond": 50}}}
    assert orjson.loads(changed.output) == wanted
    async with api.client(ADMIN_KEY) as admin:
        read = await admin.get(f"/v1/admin/tenants/{acme}/scheduling")
        assert read.json() == wanted
    kept = await asyncio.to_thread(invoke, acme, "--task-limit", "AI:concurrency=1", "--json")
    assert orjson.loads(kept.output)["taskLimits"] == {
        "EMAIL": {"perSecond": 50},
        "AI": {"concurrency": 1},
    }
    missing = await asyncio.to_thread(invoke, "nobody")
    assert missing.exit_code == 1
    assert "no tenant 'nobody'" in missing.output


async def test_dead_letters_are_visible_to_the_admin_only(api: Api) -> None:
    async with api.engine.pool.acquire() as connection:
        await connection.execute(
            "INSERT INTO dead_letters (tenant_id, queue, body, reason) VALUES ($1, $2, $3, $4)",
            None,
            "workflow-orchestrator",
            b'{"name": "event", "data": 7}',
            "data must be an object",
        )
    async with api.client(ADMIN_KEY) as admin, api.client(key(api)) as tenant:
        listed = await admin.get("/v1/admin/dead-letters")
        refused = await tenant.get("/v1/admin/dead-letters")
    (item,) = listed.json()["items"]
    assert (item["queue"], item["reason"]) == ("workflow-orchestrator", "data must be an object")
    assert item["body"] == '{"name": "event", "data": 7}'
    assert refused.status_code == 403
