"""Upgrades through the front door: the HTTP routes, the client and the CLI, real HTTP.

The engine behind the API is real (Postgres, memory queue, engine loop); the CLI runs
in a thread so the server keeps serving in the test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from api_support import running_api
from click.testing import CliRunner, Result

from statefleet.cli import statefleet as cli
from statefleet.client import AsyncClient

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
V1 = json.loads((FIXTURES / "review-v1.json").read_text())
V2 = json.loads((FIXTURES / "review-v2.json").read_text())


async def invoke(*args: str) -> Result:
    return await asyncio.to_thread(CliRunner().invoke, cli, list(args))


async def settle(client: AsyncClient, ids: list[str], state: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        values = [(await client.get(i)).value for i in ids]
        if values == [state] * len(ids):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"never reached {state}: {values}")
        await asyncio.sleep(0.05)


async def test_routes_client_and_cli(database_dsn: str) -> None:
    async with running_api(database_dsn) as api:
        _, key = api.tenants["acme"]
        async with AsyncClient(api.url, key) as client, api.client(key) as http:
            await client.deploy(V1)
            await client.deploy(V2)
            ids = [(await client.start("review-flow", {}, version=1)).id for _ in range(12)]
            await settle(client, ids, "intake")
            high = ids[:2]
            for instance in ids:
                priority = "high" if instance in high else "low"
                await client.send(instance, "SUBMIT", {"priority": priority})
            await settle(client, ids, "review")

            # A dry run: 200, camelCase fields, counts, and paging through the entries.
            answer = await http.post(
                "/v1/definitions/review-flow/upgrades",
                params={"limit": 5},
                json={"fromVersion": 1, "toVersion": 2, "stateMap": {"review": "legal_review"}},
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["dryRun"] is True
            assert body["status"] == "done"
            assert body["counts"] == {"compatible": 10, "diverged": 2, "unmappable": 0, "error": 0}
            assert len(body["items"]) == 5
            assert body["nextCursor"]
            seen = [item["instanceId"] for item in body["items"]]
            cursor = body["nextCursor"]
            while cursor:
                page = await http.get(f"/v1/upgrades/{body['id']}", params={"cursor": cursor})
                assert page.status_code == 200, page.text
                seen += [item["instanceId"] for item in page.json()["items"]]
                cursor = page.json()["nextCursor"]
            assert sorted(seen) == sorted(ids)

            # The client's verdicts, with the divergence of the high-priority ones.
            report = await client.upgrade(
                "review-flow", from_version=1, to_version=2, state_map={"review": "legal_review"}
            )
            verdicts = {e.instance_id: e for e in report.items}
            assert {i for i, e in verdicts.items() if e.verdict == "diverged"} == set(high)
            assert verdicts[high[0]].divergence == {
                "seq": 2,
                "event": "SUBMIT",
                "expected": "legal_review",
                "got": "audit",
                "reason": "state",
            }

            # Bad input: a clear error naming the field; unknown ids and versions are 404.
            bad = await http.post(
                "/v1/definitions/review-flow/upgrades",
                json={"fromVersion": 1, "toVersion": 2, "stateMap": {"nope": "legal_review"}},
            )
            assert bad.status_code == 422, bad.text
            assert bad.json()["error"]["code"] == "invalid_upgrade"
            assert bad.json()["error"]["details"][0]["path"] == "stateMap.nope"
            same = await http.post(
                "/v1/definitions/review-flow/upgrades", json={"fromVersion": 1, "toVersion": 1}
            )
            assert same.status_code == 422
            assert same.json()["error"]["details"][0]["path"] == "toVersion"
            missing = await http.post(
                "/v1/definitions/review-flow/upgrades", json={"fromVersion": 1, "toVersion": 9}
            )
            assert missing.status_code == 404
            assert missing.json()["error"]["code"] == "unknown_version"
            typo = await http.post(
                "/v1/definitions/review-flow/upgrades", json={"fromVersion": 1, "to_version": 2}
            )
            assert typo.status_code == 400
            nobody = await http.get(f"/v1/upgrades/{uuid.uuid4()}")
            assert nobody.status_code == 404
            assert nobody.json()["error"]["code"] == "unknown_upgrade"
            async with api.client(api.tenants["globex"][1]) as other:
                hidden = await other.get(f"/v1/upgrades/{body['id']}")
                assert hidden.status_code == 404

            # The CLI: a dry run's table, then an apply that waits for its moves.
            common = ["--url", api.url, "--api-key", key]
            dry = await invoke(
                "upgrade", "review-flow", "--from-version", "1", "--to-version", "2",
                "--map", "review=legal_review", *common,
            )  # fmt: skip
            assert dry.exit_code == 0, dry.output
            assert "12 instance(s): 10 compatible, 2 diverged" in dry.output
            assert "seq 2 SUBMIT: state expected legal_review, got audit" in dry.output
            applied = await invoke(
                "upgrade", "review-flow", "--from-version", "1", "--to-version", "2",
                "--map", "review=legal_review", "--apply", "--json", *common,
            )  # fmt: skip
            assert applied.exit_code == 0, applied.output
            data: dict[str, Any] = json.loads(applied.stdout.strip().splitlines()[-1])
            assert data["status"] == "done"
            assert data["progress"]["moved"] == 10
            moved = {i["instanceId"] for i in data["items"] if i["outcome"] == "moved"}
            assert moved == set(ids) - set(high)
            instance = await client.get(sorted(moved)[0])
            assert (instance.definition_version, instance.value) == (2, "legal_review")
            history = [e async for e in client.history(instance.id)]
            assert history[-1].type == "xstate.upgrade"
            assert history[-1].payload["verdict"] == "compatible"

            # simulate --history replays a live instance on a spec file, offline.
            spec_path = str(FIXTURES / "review-v2.json")
            simulated = await invoke("simulate", spec_path, "--history", high[0], *common)
            assert simulated.exit_code == 0, simulated.output
            steps = [json.loads(line) for line in simulated.stdout.splitlines()]
            assert [s["event"]["type"] for s in steps] == [
                "xstate.init",
                "WORKFLOW_START",
                "SUBMIT",
            ]
            assert [s.get("matches") for s in steps] == [None, True, False]
            assert steps[-1]["recorded"] == "review"
            assert steps[-1]["value"] == "audit"

            # force with a list of ids moves exactly those diverged ones.
            forced = await client.upgrade(
                "review-flow",
                from_version=1,
                to_version=2,
                state_map={"review": "legal_review"},
                instance_ids=high[:1],
                dry_run=False,
                force=True,
            )
            deadline = time.monotonic() + 30
            while not forced.finished:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
                forced = await client.get_upgrade(forced.id)
            assert forced.total == 1
            assert forced.progress.chosen == 1
            assert forced.progress.moved == 1
            assert (await client.get(high[0])).definition_version == 2
            assert (await client.get(high[1])).definition_version == 1
