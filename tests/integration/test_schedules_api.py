"""The schedule routes, client methods and CLI over real HTTP against real Postgres.

Firing is covered by test_schedules.py; here: the contract (shapes, statuses, errors
naming their field), pagination, tenant isolation, the client and the CLI.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from api_support import Api, key
from click.testing import CliRunner

from statefleet.cli import statefleet
from statefleet.client import AsyncClient, InvalidRequest, NotFound

pytestmark = pytest.mark.asyncio

WAITING: dict[str, Any] = {
    "id": "waiting",
    "initial": "idle",
    "states": {"idle": {"on": {"WAKE": "done"}}, "done": {"type": "final"}},
}


async def test_create_get_list_pause_resume_delete(api: Api) -> None:
    async with api.client(key(api)) as http:
        assert (await http.post("/v1/definitions", json={"spec": WAITING})).status_code == 201
        body = {
            "definitionKey": "waiting",
            "cron": "0 9 * * MON-FRI",
            "timezone": "America/New_York",
            "input": {"report": "daily"},
            "overlap": "bufferOne",
            "catchUp": "all",
        }
        created = await http.post("/v1/schedules", json=body)
        assert created.status_code == 201, created.text
        schedule = created.json()
        assert {k: schedule[k] for k in body} == body
        assert schedule["every"] is None
        assert schedule["paused"] is False
        assert schedule["nextRunAt"].endswith(("13:00:00Z", "14:00:00Z"))  # 09:00 in New York
        ident = schedule["id"]
        assert (await http.get(f"/v1/schedules/{ident}")).json() == schedule

        second = await http.post(
            "/v1/schedules", json={"definitionKey": "waiting", "every": 30, "version": 1}
        )
        assert second.status_code == 201, second.text
        assert (second.json()["every"], second.json()["overlap"]) == (30, "skip")
        assert second.json()["catchUp"] == "skip"
        page = (await http.get("/v1/schedules", params={"limit": 1})).json()
        assert [i["id"] for i in page["items"]] == [second.json()["id"]]  # newest first
        rest = (await http.get("/v1/schedules", params={"cursor": page["nextCursor"]})).json()
        assert [i["id"] for i in rest["items"]] == [ident]
        assert rest["nextCursor"] is None

        paused = await http.post(f"/v1/schedules/{ident}/pause")
        assert (paused.status_code, paused.json()["paused"]) == (200, True)
        resumed = await http.post(f"/v1/schedules/{ident}/resume")
        assert (resumed.status_code, resumed.json()["paused"]) == (200, False)
        assert (await http.delete(f"/v1/schedules/{ident}")).status_code == 204
        gone = await http.get(f"/v1/schedules/{ident}")
        assert (gone.status_code, gone.json()["error"]["code"]) == (404, "unknown_schedule")
        assert (await http.delete(f"/v1/schedules/{ident}")).status_code == 404


async def test_bad_schedules_are_refused_naming_the_field(api: Api) -> None:
    async with api.client(key(api)) as http:
        await http.post("/v1/definitions", json={"spec": WAITING})
        base = {"definitionKey": "waiting"}
        cases: list[tuple[dict[str, Any], int, str, str]] = [
            ({"cron": "61 * * * *"}, 422, "invalid_schedule", "cron"),
            ({"cron": "* * *"}, 422, "invalid_schedule", "cron"),
            ({"every": 5, "timezone": "Mars/Olympus"}, 422, "invalid_schedule", "timezone"),
            ({"every": 5, "definitionKey": "nope"}, 422, "invalid_schedule", "definitionKey"),
            ({"every": 5, "version": 7}, 422, "invalid_schedule", "version"),
            ({"every": 5, "cron": "* * * * *"}, 422, "invalid_schedule", "cron"),
            ({}, 422, "invalid_schedule", "cron"),
            ({"every": 0}, 400, "invalid_request", "every"),
            ({"every": 5, "overlap": "queue"}, 400, "invalid_request", "overlap"),
            ({"every": 5, "catchUp": "some"}, 400, "invalid_request", "catchUp"),
            ({"every": 5, "catch_up": "all"}, 400, "invalid_request", "catch_up"),
        ]
        for fields, status, code, path in cases:
            answer = await http.post("/v1/schedules", json={**base, **fields})
            assert answer.status_code == status, (fields, answer.text)
            error = answer.json()["error"]
            assert error["code"] == code, (fields, error)
            assert error["details"][0]["path"] == path, (fields, error)
            assert error["message"].startswith(path), (fields, error)
        assert (await http.get("/v1/schedules")).json()["items"] == []


async def test_a_tenant_sees_and_changes_only_its_own_schedules(api: Api) -> None:
    async with api.client(key(api)) as acme, api.client(key(api, "globex")) as globex:
        await acme.post("/v1/definitions", json={"spec": WAITING})
        ident = (
            await acme.post("/v1/schedules", json={"definitionKey": "waiting", "every": 60})
        ).json()["id"]
        for method, path in [
            ("GET", f"/v1/schedules/{ident}"),
            ("POST", f"/v1/schedules/{ident}/pause"),
            ("POST", f"/v1/schedules/{ident}/resume"),
            ("DELETE", f"/v1/schedules/{ident}"),
        ]:
            answer = await globex.request(method, path)
            assert answer.status_code == 404, (method, path, answer.text)
        assert (await globex.get("/v1/schedules")).json()["items"] == []
        # globex has no such definition: it cannot schedule acme's.
        refused = await globex.post("/v1/schedules", json={"definitionKey": "waiting", "every": 5})
        assert refused.status_code == 422
        assert (await acme.get(f"/v1/schedules/{ident}")).json()["paused"] is False
        assert (await acme.get("/v1/schedules/not-a-uuid")).status_code == 404
        assert (await globex.get("/v1/schedules", headers={"Authorization": ""})).status_code in (
            401,
            403,
        )


async def test_the_client_and_the_cli(api: Api) -> None:
    async with AsyncClient(api.url, key(api)) as client:
        await client.deploy(WAITING)
        made = await client.create_schedule(
            "waiting", cron="*/5 * * * *", timezone="Europe/Paris", input={"n": 1}
        )
        assert (made.cron, made.timezone, made.input, made.overlap) == (
            "*/5 * * * *",
            "Europe/Paris",
            {"n": 1},
            "skip",
        )
        assert (await client.get_schedule(made.id)).id == made.id
        assert (await client.pause_schedule(made.id)).paused
        assert not (await client.resume_schedule(made.id)).paused
        assert [s.id async for s in client.list_schedules(page_size=1)] == [made.id]
        with pytest.raises(InvalidRequest) as caught:
            await client.create_schedule("waiting", every=5, timezone="Nowhere/Land")
        assert caught.value.code == "invalid_schedule"
        await client.delete_schedule(made.id)
        with pytest.raises(NotFound):
            await client.get_schedule(made.id)

    def cli(*args: str) -> Any:
        return CliRunner().invoke(statefleet, [*args, "--url", api.url, "--api-key", key(api)])

    created = await asyncio.to_thread(
        cli, "schedules", "create", "waiting", "--every", "30", "--overlap", "allow", "--json"
    )
    assert created.exit_code == 0, created.output
    schedule = orjson.loads(created.output)
    assert (schedule["every"], schedule["overlap"]) == (30, "allow")
    listed = await asyncio.to_thread(cli, "schedules", "ls")
    assert listed.exit_code == 0, listed.output
    assert schedule["id"] in listed.output
    assert "every 30s" in listed.output
    paused = await asyncio.to_thread(cli, "schedules", "pause", schedule["id"])
    assert paused.exit_code == 0, paused.output
    assert paused.output.startswith(f"paused schedule {schedule['id']}:")
    resumed = await asyncio.to_thread(cli, "schedules", "resume", schedule["id"], "--json")
    assert orjson.loads(resumed.output)["paused"] is False
    bad = await asyncio.to_thread(cli, "schedules", "create", "waiting", "--cron", "nope")
    assert bad.exit_code == 1
    assert "invalid_schedule" in bad.output
    assert "cron" in bad.output
    neither = await asyncio.to_thread(cli, "schedules", "create", "waiting")
    assert neither.exit_code == 1
    deleted = await asyncio.to_thread(cli, "schedules", "delete", schedule["id"])
    assert deleted.exit_code == 0, deleted.output
    again = await asyncio.to_thread(cli, "schedules", "delete", schedule["id"])
    assert again.exit_code == 1
    assert "unknown_schedule" in again.output
