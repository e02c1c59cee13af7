"""What the web console needs from the API, over real HTTP on a real Postgres.

The inbox route (``GET /v1/tasks?status=pending&type=HUMAN``: the tenant's own tasks
only, cursor pagination that neither skips nor repeats), the instance list's
``idPrefix``, the graph's ``active`` highlighting, and ``/ui/`` itself: its page,
assets and security headers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import uuid
from typing import Any

import click
import httpx
import pytest
from api_support import HELLO, Api, key
from click.testing import CliRunner
from test_api import HUMAN, error_code, wait_status

from statefleet.api.console import CONSOLE_DIR
from statefleet.client import AsyncClient
from statefleet.commands.client_cmds import register

pytestmark = pytest.mark.asyncio


async def _start_human(client: httpx.AsyncClient, count: int) -> list[str]:
    await client.post("/v1/definitions", json={"spec": HUMAN})
    ids = []
    for _ in range(count):
        started = await client.post("/v1/instances", json={"definitionKey": "approval"})
        assert started.status_code == 201, started.text
        ids.append(started.json()["id"])
    return ids


async def _inbox(client: httpx.AsyncClient, limit: int = 100) -> list[dict[str, Any]]:
    """Every page of the inbox, following nextCursor."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"status": "pending", "type": "HUMAN", "limit": limit}
        if cursor:
            params["cursor"] = cursor
        page = await client.get("/v1/tasks", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert set(body) == {"items", "nextCursor"}
        assert len(body["items"]) <= limit
        items.extend(body["items"])
        cursor = body["nextCursor"]
        if cursor is None:
            return items


async def test_the_inbox_pages_through_pending_human_tasks_oldest_first(api: Api) -> None:
    async with api.client(key(api)) as acme, api.client(key(api, "globex")) as globex:
        ids = await _start_human(acme, 7)
        await _start_human(globex, 2)
        await acme.post("/v1/definitions", json={"spec": HELLO})
        await acme.post("/v1/instances", json={"definitionKey": "hello-workflow"})

        items = await _inbox(acme, limit=3)
        assert [t["instanceId"] for t in items] == ids  # oldest first, each once
        assert {(t["type"], t["status"], t["name"]) for t in items} == {
            ("HUMAN", "pending", "approve")
        }
        assert len({t["id"] for t in items}) == 7
        created = [t["createdAt"] for t in items]
        assert created == sorted(created)

        # A completed task leaves the inbox; the other tenant's stay its own.
        done = await acme.post(f"/v1/tasks/{items[0]['id']}/complete", json={"output": {}})
        assert done.status_code == 200, done.text
        await wait_status(acme, ids[0], {"done"})
        assert [t["id"] for t in await _inbox(acme)] == [t["id"] for t in items[1:]]
        theirs = await _inbox(globex)
        assert len(theirs) == 2
        assert not {t["id"] for t in theirs} & {t["id"] for t in items}
        assert not {t["instanceId"] for t in theirs} & set(ids)

        # Without filters the list holds every task of the tenant (here: the EMAIL too).
        everything = (await acme.get("/v1/tasks", params={"limit": 1000})).json()["items"]
        assert {t["type"] for t in everything} == {"HUMAN", "EMAIL"}
        succeeded = (await acme.get("/v1/tasks", params={"status": "succeeded"})).json()
        assert items[0]["id"] in {t["id"] for t in succeeded["items"]}


async def test_the_inbox_refuses_bad_parameters_with_the_path(api: Api) -> None:
    async with api.client(key(api)) as client:
        for params, where in (
            ({"status": "waiting"}, "status"),
            ({"limit": 0}, "limit"),
            ({"limit": 1001}, "limit"),
            ({"type": ""}, "type"),
        ):
            answer = await client.get("/v1/tasks", params=params)
            assert (answer.status_code, error_code(answer)) == (400, "invalid_request"), params
            assert answer.json()["error"]["message"].startswith(f"{where}: "), answer.text
        bad_cursor = await client.get("/v1/tasks", params={"cursor": "not-a-cursor"})
        assert (bad_cursor.status_code, error_code(bad_cursor)) == (400, "invalid_request")
    async with api.client() as anonymous:
        assert (await anonymous.get("/v1/tasks")).status_code == 401


async def test_instances_filter_by_id_prefix(api: Api) -> None:
    async with api.client(key(api)) as acme, api.client(key(api, "globex")) as globex:
        ids = await _start_human(acme, 5)
        theirs = await _start_human(globex, 1)
        target = ids[2]
        for prefix in (target[:8], target[:8].upper(), target):
            found = (await acme.get("/v1/instances", params={"idPrefix": prefix})).json()
            assert target in [i["id"] for i in found["items"]]
            assert all(i["id"].startswith(prefix.lower()) for i in found["items"])
        other = (await acme.get("/v1/instances", params={"idPrefix": theirs[0]})).json()
        assert other["items"] == []
        for bad in ("%", "abc_", "x" * 3, "0" * 37):
            answer = await acme.get("/v1/instances", params={"idPrefix": bad})
            assert (answer.status_code, error_code(answer)) == (400, "invalid_request"), bad


async def test_the_graph_highlights_the_states_named_active(api: Api) -> None:
    async with api.client(key(api)) as client:
        (instance_id,) = await _start_human(client, 1)
        instance = (await client.get(f"/v1/instances/{instance_id}")).json()
        plain = (await client.get("/v1/definitions/approval/graph")).text
        assert "classDef" not in plain
        answer = await client.get(
            "/v1/definitions/approval/graph", params={"active": '"waiting"', "version": 1}
        )
        assert answer.status_code == 200, answer.text
        assert answer.text.startswith(plain)
        assert answer.text.endswith("    class waiting active\n")
        assert instance["value"] == "waiting"
        for bad, words in (('"nowhere"', "'nowhere'"), ("{", "not JSON"), ("[]", "state value")):
            refused = await client.get("/v1/definitions/approval/graph", params={"active": bad})
            assert (refused.status_code, error_code(refused)) == (400, "invalid_request")
            assert words in refused.json()["error"]["message"], refused.text


async def test_the_console_page_and_assets_carry_security_headers(api: Api) -> None:
    async with api.client() as client:
        redirect = await client.get("/ui")
        assert (redirect.status_code, redirect.headers["location"]) == (307, "/ui/")
        for path in ("/ui/", "/ui/inbox", f"/ui/instances/{uuid.uuid4()}", "/ui/definitions/x"):
            page = await client.get(path)
            assert page.status_code == 200, path
            assert page.headers["content-type"].startswith("text/html")
            assert 'data-testid="main"' in page.text
            csp = page.headers["content-security-policy"]
            assert "script-src 'self'" in csp
            assert "unsafe-eval" not in csp
            assert "'unsafe-inline'" not in csp.split("script-src", 1)[1].split(";")[0]
            assert "frame-ancestors 'none'" in csp
            assert page.headers["x-frame-options"] == "DENY"
            assert page.headers["x-content-type-options"] == "nosniff"
        # No inline script in the page: every <script> has a src.
        scripts = re.findall(r"<script[^>]*>(.*?)</script>", (await client.get("/ui/")).text, re.S)
        assert len(scripts) == 2
        assert all(body.strip() == "" for body in scripts)

        app_js = await client.get("/ui/assets/app.js")
        assert app_js.status_code == 200
        assert "javascript" in app_js.headers["content-type"]
        assert app_js.headers["x-frame-options"] == "DENY"
        vendored = await client.get("/ui/assets/vendor/mermaid.min.js")
        assert vendored.status_code == 200
        expected = (CONSOLE_DIR / "assets" / "vendor" / "mermaid.min.js").read_bytes()
        assert hashlib.sha256(vendored.content).digest() == hashlib.sha256(expected).digest()
        assert (await client.get("/ui/assets/nothing.js")).status_code == 404
        # The console reads data only through /v1, which still wants a key.
        assert (await client.get("/v1/instances")).status_code == 401


async def test_the_client_and_cli_read_the_inbox(api: Api) -> None:
    async with api.client(key(api)) as http:
        ids = await _start_human(http, 3)
    async with AsyncClient(api.url, key(api)) as client:
        inbox = [t async for t in client.list_tasks("pending", "HUMAN", page_size=2)]
        assert [t.instance_id for t in inbox] == ids
        assert [t async for t in client.list_tasks("succeeded")] == []
    async with AsyncClient(api.url, key(api, "globex")) as other:
        assert [t async for t in other.list_tasks("pending", "HUMAN")] == []

    group = click.Group("statefleet")
    register(group)

    def cli(*args: str) -> str:
        env = {"STATEFLEET_URL": api.url, "STATEFLEET_API_KEY": key(api)}
        result = CliRunner().invoke(group, list(args), env=env)
        assert result.exit_code == 0, result.output
        return result.output

    lines = (await asyncio.to_thread(cli, "tasks", "inbox", "--json")).splitlines()
    assert [json.loads(line)["id"] for line in lines] == [t.id for t in inbox]
    table = await asyncio.to_thread(cli, "tasks", "inbox", "--limit", "2")
    assert table.splitlines()[0].split() == ["ID", "INSTANCE", "NAME", "INPUT", "WAITING", "SINCE"]
    assert [line.split()[1] for line in table.splitlines()[1:] if line.strip()] == ids[:2]
