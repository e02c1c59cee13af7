"""``Idempotency-Key`` on the starting routes, the client's ``idempotency_key=`` and the
CLI's ``batch start``: a request repeated after a timeout starts nothing twice."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import sys
from typing import Any

import asyncpg
import pytest
from api_support import HELLO, Api, key

from statefleet.client import AsyncClient

pytestmark = pytest.mark.asyncio


async def count_instances(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        count: int = await connection.fetchval("SELECT count(*) FROM workflow_instances")
        return count
    finally:
        await connection.close()


async def test_the_same_key_returns_the_same_instance_and_batch(
    api: Api, database_dsn: str
) -> None:
    async with api.client(key(api)) as http:
        await http.post("/v1/definitions", json={"spec": HELLO})
        body = {"definitionKey": "hello-workflow", "input": {"n": 1}}
        first = await http.post("/v1/instances", json=body, headers={"Idempotency-Key": "s-1"})
        again = await http.post("/v1/instances", json=body, headers={"Idempotency-Key": "s-1"})
        assert (first.status_code, again.status_code) == (201, 200), again.text
        assert first.json()["id"] == again.json()["id"]
        both = await http.post(
            "/v1/instances",
            json={**body, "idempotencyKey": "other"},
            headers={"Idempotency-Key": "s-1"},
        )
        assert both.status_code == 400, both.text
        empty = await http.post("/v1/instances", json=body, headers={"Idempotency-Key": ""})
        assert empty.status_code == 400, empty.text
        assert "Idempotency-Key" in empty.json()["error"]["message"]

        batch = {"definitionKey": "hello-workflow", "inputs": [{"n": i} for i in range(7)]}
        started = await http.post("/v1/batches", json=batch, headers={"Idempotency-Key": "b-1"})
        repeated = await http.post("/v1/batches", json=batch, headers={"Idempotency-Key": "b-1"})
        assert (started.status_code, repeated.status_code) == (201, 200), repeated.text
        assert started.json() == repeated.json()
        assert started.json()["count"] == 7
        assert await count_instances(database_dsn) == 1 + 7

        other = {**batch, "inputs": [{}]}
        reused = await http.post("/v1/batches", json=other, headers={"Idempotency-Key": "b-1"})
        assert reused.status_code == 409, reused.text
        assert reused.json()["error"]["code"] == "idempotency_key_reused"
        unkeyed = await http.post("/v1/batches", json=batch)
        assert unkeyed.status_code == 201
        assert unkeyed.json()["batchId"] != started.json()["batchId"]
        assert await count_instances(database_dsn) == 1 + 7 + 7


async def test_client_methods_take_idempotency_key(api: Api, database_dsn: str) -> None:
    async with AsyncClient(api.url, api_key=key(api)) as client:
        await client.deploy(HELLO)
        one = await client.start("hello-workflow", {"n": 1}, idempotency_key="c-1")
        same = await client.start("hello-workflow", {"n": 1}, idempotency_key="c-1")
        assert one.id == same.id
        inputs: list[dict[str, Any]] = [{"n": i} for i in range(5)]
        chunks = await client.start_many(
            "hello-workflow", inputs, chunk_size=2, idempotency_key="m-1"
        )
        again = await client.start_many(
            "hello-workflow", inputs, chunk_size=2, idempotency_key="m-1"
        )
        assert [b.batch_id for b in chunks] == [b.batch_id for b in again]
        assert [b.count for b in chunks] == [2, 2, 1]
        batch = await client.batch("hello-workflow", inputs, idempotency_key="k-1")
        assert (await client.batch("hello-workflow", inputs, idempotency_key="k-1")) == batch
        progress = await client.batch(str(batch.batch_id))
        assert progress.total == 5
    assert await count_instances(database_dsn) == 1 + 5 + 5


async def run_cli(api: Api, *args: str) -> str:
    env = {**os.environ, "STATEFLEET_URL": api.url, "STATEFLEET_API_KEY": key(api)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "statefleet",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode() + out.decode()
    return out.decode()


async def test_cli_batch_run_twice_starts_nothing_twice(
    api: Api, database_dsn: str, tmp_path: pathlib.Path
) -> None:
    async with AsyncClient(api.url, api_key=key(api)) as client:
        await client.deploy(HELLO)
    path = tmp_path / "inputs.jsonl"
    path.write_text("".join(json.dumps({"n": i}) + "\n" for i in range(5)))
    args = ("batch", "start", "hello-workflow", str(path), "--chunk-size", "3", "--json")
    first = [json.loads(line) for line in (await run_cli(api, *args)).splitlines()]
    second = [json.loads(line) for line in (await run_cli(api, *args)).splitlines()]
    assert [b["batchId"] for b in first] == [b["batchId"] for b in second]
    assert [b["count"] for b in first] == [3, 2]
    assert await count_instances(database_dsn) == 5
    # Another key on purpose starts them again.
    await run_cli(api, *args, "--idempotency-key", "again")
    assert await count_instances(database_dsn) == 10
