"""The hardened public surface over real HTTP (issue #19): numbers, identifiers, slow bodies.

- A body with an integer beyond 64 bits, NaN or Infinity is 400 ``invalid_json`` naming the
  JSON path, on every route that takes a body, and nothing is stored.
- Definition ids, event types, task names and keys follow one rule each: what deploy
  refuses, every route refuses (400/422 with the path); what it accepts, they accept.
- A body that stalls, or is shorter than its ``Content-Length``, gets 408 and a closed
  connection (checked on a raw TCP connection against the served app).
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from api_support import HELLO, running_api

from statefleet.api.settings import DEFAULT_BODY_TIMEOUT_MS

pytestmark = pytest.mark.asyncio

BIG = b"18446744073709551616"  # 2^64: one past what orjson (and so the store) can write


def spec(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(HELLO)
    out.update(changes)
    return out


def assert_invalid_json(response: httpx.Response, path: str) -> None:
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["details"][0]["path"] == path
    assert error["message"].startswith(f"{path}: ")


async def test_numbers_beyond_64_bits_and_non_finite_are_refused_in_every_body(
    database_dsn: str,
) -> None:
    async with running_api(database_dsn) as api, api.client(api.tenants["acme"][1]) as client:
        headers = {"Content-Type": "application/json"}

        async def post(path: str, raw: bytes) -> httpx.Response:
            return await client.post(path, content=raw, headers=headers)

        body = b'{"spec": {"id": "big", "initial": "a", "context": {"x": %s}, "states": {"a": {}}}}'
        assert_invalid_json(await post("/v1/definitions", body % BIG), "spec.context.x")
        assert_invalid_json(await post("/v1/definitions", body % b"NaN"), "spec.context.x")
        assert (await client.get("/v1/definitions/big")).status_code == 404  # nothing stored

        assert (await client.post("/v1/definitions", json={"spec": HELLO})).status_code == 201
        start = b'{"definitionKey": "hello-workflow", "input": {"n": [1, %s]}}'
        assert_invalid_json(await post("/v1/instances", start % b"Infinity"), "input.n[1]")
        assert_invalid_json(await post("/v1/instances", start % b"-1e400"), "input.n[1]")
        assert_invalid_json(await post("/v1/instances", start % (b"-" + BIG)), "input.n[1]")
        listed = await client.get("/v1/instances")
        assert listed.json()["items"] == []  # none of them started

        batch = b'{"definitionKey": "hello-workflow", "inputs": [{}, {"a": {"b": %s}}]}'
        assert_invalid_json(await post("/v1/batches", batch % BIG), "inputs[1].a.b")

        started = await client.post("/v1/instances", json={"definitionKey": "hello-workflow"})
        instance = started.json()["id"]
        event = b'{"type": "GO", "payload": {"amount": %s}}'
        response = await post(f"/v1/instances/{instance}/events", event % b"-Infinity")
        assert_invalid_json(response, "payload.amount")
        response = await post(f"/v1/instances/{instance}/events", event % BIG)
        assert_invalid_json(response, "payload.amount")

        task = uuid.uuid4()
        response = await post(f"/v1/tasks/{task}/complete", b'{"output": {"v": NaN}}')
        assert_invalid_json(response, "output.v")
        response = await post(f"/v1/tasks/{task}/complete", b'{"output": %s}' % BIG)
        assert_invalid_json(response, "output")

        history = await client.get(f"/v1/instances/{instance}/history")
        assert all(row["type"] != "GO" for row in history.json()["items"])

        # The largest numbers that fit are kept exactly.
        fits = b'{"definitionKey": "hello-workflow", "input": {"u": 18446744073709551615}}'
        kept = await post("/v1/instances", fits)
        assert kept.status_code == 201, kept.text
        assert kept.json()["context"]["u"] == 2**64 - 1


async def test_identifiers_follow_one_rule_on_deploy_and_on_every_route(database_dsn: str) -> None:
    async with running_api(database_dsn) as api, api.client(api.tenants["acme"][1]) as client:
        for bad in ("a/b", "../../etc/passwd", "x" * 129, "a b", "-lead", "é"):
            refused = await client.post("/v1/definitions", json={"spec": spec(id=bad)})
            assert refused.status_code == 422, (bad, refused.text)
            assert refused.json()["error"]["code"] == "invalid_spec"
            assert refused.json()["error"]["details"][0]["path"] == "id"
            by_key = await client.post("/v1/definitions", json={"spec": HELLO, "key": bad})
            assert by_key.status_code == 400, (bad, by_key.text)
            assert by_key.json()["error"]["details"][0]["path"] == "key"
            started = await client.post("/v1/instances", json={"definitionKey": bad})
            assert started.status_code == 400, (bad, started.text)
            assert started.json()["error"]["details"][0]["path"] == "definitionKey"
            batch = await client.post("/v1/batches", json={"definitionKey": bad, "inputs": [{}]})
            assert batch.status_code == 400, (bad, batch.text)
        assert (await client.get("/v1/definitions")).json()["items"] == []
        assert (await client.get("/v1/definitions/" + "x" * 129)).status_code == 400
        assert (await client.get("/v1/instances?definitionKey=a%20b")).status_code == 400

        # The longest id and every allowed character: deploy, read, start, list.
        for good in ("x" * 128, "Order:v2.1_beta-3"):
            waits = spec(id=good)  # a HUMAN task: the instance stays running for the events
            waits["states"]["start"]["on"]["WORKFLOW_START"]["actions"][0]["task"]["type"] = "HUMAN"
            deployed = await client.post("/v1/definitions", json={"spec": waits})
            assert deployed.status_code == 201, deployed.text
            assert (await client.get(f"/v1/definitions/{good}")).status_code == 200
            graph = await client.get(f"/v1/definitions/{good}/versions/1")
            assert graph.status_code == 200
            started = await client.post(
                "/v1/instances", json={"definitionKey": good, "idempotencyKey": good[-1] * 200}
            )
            assert started.status_code == 201, started.text
            listed = await client.get("/v1/instances", params={"definitionKey": good})
            assert len(listed.json()["items"]) == 1

        instance = started.json()["id"]
        for field, value in (("type", "GO NOW"), ("type", "*"), ("type", "x" * 129)):
            sent = await client.post(f"/v1/instances/{instance}/events", json={field: value})
            assert sent.status_code == 400, (value, sent.text)
            assert sent.json()["error"]["details"][0]["path"] == field
        for key in ("k" * 201, "with space", "naïve"):
            sent = await client.post(
                f"/v1/instances/{instance}/events", json={"type": "GO", "id": key}
            )
            assert sent.status_code == 400, (key, sent.text)
            assert sent.json()["error"]["details"][0]["path"] == "id"
            again = await client.post(
                "/v1/instances",
                json={"definitionKey": "Order:v2.1_beta-3", "idempotencyKey": key},
            )
            assert again.status_code == 400
            assert again.json()["error"]["details"][0]["path"] == "idempotencyKey"
            if key.isascii():  # a header holds ASCII only
                by_header = await client.post(
                    "/v1/instances",
                    json={"definitionKey": "Order:v2.1_beta-3"},
                    headers={"Idempotency-Key": key},
                )
                assert by_header.status_code == 400
                assert by_header.json()["error"]["details"][0]["path"] == "Idempotency-Key"
        sent = await client.post(
            f"/v1/instances/{instance}/events", json={"type": "order.paid:v2", "id": "e-1:x"}
        )
        assert sent.status_code == 202, sent.text

        # Event types and task names inside a spec follow the same rules.
        broken = spec()
        broken["states"]["notify"]["on"] = {"HELLO SENT": {"target": "done"}}
        broken["states"]["start"]["on"]["WORKFLOW_START"]["actions"][0]["task"]["name"] = "a/b"
        refused = await client.post("/v1/definitions", json={"spec": broken})
        assert refused.status_code == 422
        paths = [d["path"] for d in refused.json()["error"]["details"]]
        assert paths == [
            "states.start.on.WORKFLOW_START.actions[0].task.name",
            'states.notify.on["HELLO SENT"]',
        ]


async def _answer_to_a_stalled_body(url: str, key: str, *, dribble: bool) -> bytes:
    """Sends headers promising 1,000 bytes, then a few (one every 0.2 s with ``dribble``)."""
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        writer.write(
            b"POST /v1/definitions HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + key.encode() + b"\r\nContent-Length: 1000\r\n\r\n"
            b'{"spec": '
        )
        await writer.drain()
        read = asyncio.create_task(reader.read())  # everything until the server closes
        # Bounded so a regression fails instead of hanging: ten times the limit.
        async with asyncio.timeout(10 * DEFAULT_BODY_TIMEOUT_MS / 1000):
            while dribble and not read.done():
                writer.write(b" ")
                await writer.drain()
                await asyncio.wait([read], timeout=0.2)
            return await read
    finally:
        writer.close()


@pytest.mark.parametrize("dribble", [False, True], ids=["truncated", "slow"])
async def test_a_stalled_or_slow_body_times_out_and_the_connection_closes(
    database_dsn: str, dribble: bool
) -> None:
    async with running_api(database_dsn) as api:
        answer = await _answer_to_a_stalled_body(api.url, api.tenants["acme"][1], dribble=dribble)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408 "), answer[:300]
        assert b"connection: close" in head.lower()
        assert b'"request_timeout"' in body
        # The server keeps serving everyone else.
        async with api.client(api.tenants["acme"][1]) as client:
            assert (await client.get("/v1/definitions")).status_code == 200
