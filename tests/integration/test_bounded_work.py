"""Bounded work: spec limits at deploy (per tenant, admin API) and the budget of a step.

Real Postgres, the real engine loop and the real API over HTTP: a step over its
budget fails its own instance (status, error, audit row naming the budget) while
another instance on the same engine runs to the end; a tenant's limits are set by
the admin API and refuse its deploys with the JSON path, not another tenant's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from api_support import ADMIN_KEY, HELLO, Api, running_api
from runtime_support import FAST, running_engine, wait_for

from statefleet.client import AsyncClient
from statefleet.engine.handlers import HandlerRegistry
from statefleet.registries import hello_noop

pytestmark = pytest.mark.asyncio

TENANT = "bounded"

#: WORKFLOW_START runs an eventless chain of ``context.limit`` microsteps.
CHAIN: dict[str, Any] = {
    "id": "chain",
    "initial": "idle",
    "context": {"n": 0, "limit": 0},
    "states": {
        "idle": {"on": {"WORKFLOW_START": "busy"}},
        "busy": {
            "always": [
                {
                    "guard": {"expr": "context.n < context.limit"},
                    "actions": {
                        "type": "assign",
                        "path": "n",
                        "value": {"$expr": "context.n + 1"},
                    },
                },
                {"target": "finished"},
            ]
        },
        "finished": {"type": "final"},
    },
}

#: The canary: one cheap step to the end.
CANARY: dict[str, Any] = {
    "id": "canary",
    "initial": "waiting",
    "states": {"waiting": {"on": {"WORKFLOW_START": "finished"}}, "finished": {"type": "final"}},
}


#: A big machine (121 states: its steps run in a worker thread) whose GO never settles.
WIDE_LOOP: dict[str, Any] = {
    "id": "chain",
    "type": "parallel",
    "context": {"n": 0, "limit": 0},
    "states": {
        f"r{i}": {
            "initial": "a",
            "states": {
                "a": {"on": {"WORKFLOW_START": "b"}},
                "b": {
                    "always": {
                        "guard": {"expr": "context.n < context.limit"},
                        "actions": {
                            "type": "assign",
                            "path": "n",
                            "value": {"$expr": "context.n + 1"},
                        },
                    }
                },
            },
        }
        for i in range(40)
    },
}


def parallel(regions: int) -> dict[str, Any]:
    states = {
        f"r{i}": {"initial": "a", "states": {"a": {"on": {"GO": "b"}}, "b": {}}}
        for i in range(regions)
    }
    return {"id": f"wide-{regions}", "type": "parallel", "states": states}


@pytest.mark.parametrize("heavy_spec", [CHAIN, WIDE_LOOP], ids=["inline", "thread"])
async def test_a_step_over_its_time_budget_fails_its_instance_and_not_the_others(
    database_dsn: str, heavy_spec: dict[str, Any]
) -> None:
    # 200 ms of CPU time; the chain would need seconds (a million microsteps allowed).
    settings = dataclasses.replace(FAST, step_time_budget_ms=200, step_max_microsteps=10**6)
    async with running_engine(database_dsn, HandlerRegistry(), settings=settings) as engine:
        service = engine.service
        await service.deploy(TENANT, heavy_spec)
        await service.deploy(TENANT, CANARY)
        heavy = await service.start(TENANT, "chain", {"limit": 10**6})
        canary = await service.start(TENANT, "canary")
        heavy_view = await wait_for(service, TENANT, heavy.instance_id)
        canary_view = await wait_for(service, TENANT, canary.instance_id)
        history = await service.history(TENANT, heavy.instance_id)
        small = await service.start(TENANT, "chain", {"limit": 10})
        small_view = await wait_for(
            service, TENANT, small.instance_id, lambda v: v.status != "running" or v.context["n"]
        )

    assert canary_view.status == "done"
    # The same definition within budget: CHAIN finishes at n = 10; WIDE_LOOP's 40
    # regions all count in the one eventless round that sees n < 10, and settle at 40.
    assert small_view.status == ("done" if heavy_spec is CHAIN else "running")
    assert small_view.context["n"] == (10 if heavy_spec is CHAIN else 40)
    assert heavy_view.status == "failed"
    assert heavy_view.error is not None
    assert heavy_view.error.startswith("step budget exceeded: CPU time over 200 ms")
    before = "idle" if heavy_spec is CHAIN else {f"r{i}": "a" for i in range(40)}
    assert heavy_view.value == before  # nothing of the step was applied
    last = history[-1]
    assert (last["type"], last["state_after"], last["effects"]) == ("WORKFLOW_START", before, [])
    assert last["error"] == heavy_view.error


async def test_a_step_over_its_microstep_budget_fails_its_instance(database_dsn: str) -> None:
    settings = dataclasses.replace(FAST, step_max_microsteps=50)
    async with running_engine(database_dsn, HandlerRegistry(), settings=settings) as engine:
        service = engine.service
        await service.deploy(TENANT, CHAIN)
        within = await service.start(TENANT, "chain", {"limit": 40})
        over = await service.start(TENANT, "chain", {"limit": 60})
        within_view = await wait_for(service, TENANT, within.instance_id)
        over_view = await wait_for(service, TENANT, over.instance_id)
        history = await service.history(TENANT, over.instance_id)

    assert within_view.status == "done"
    assert over_view.status == "failed"
    assert over_view.error is not None
    assert over_view.error.startswith("step budget exceeded: more than 50 microsteps")
    assert history[-1]["error"] == over_view.error


@pytest.mark.slow
async def test_the_step_budget_travels_to_ray_shard_actors(
    local_ray: None, database_dsn: str
) -> None:
    """The budget is a setting of the shards: Ray actors get it in their constructor."""
    settings = dataclasses.replace(FAST, step_max_microsteps=50)
    async with running_engine(database_dsn, hello_noop, settings=settings, hosts="ray") as engine:
        service = engine.service
        await service.deploy(TENANT, CHAIN)
        within = await service.start(TENANT, "chain", {"limit": 40})
        over = await service.start(TENANT, "chain", {"limit": 60})
        within_view = await wait_for(service, TENANT, within.instance_id, timeout=60)
        over_view = await wait_for(service, TENANT, over.instance_id, timeout=60)

    assert within_view.status == "done"
    assert over_view.status == "failed"
    assert over_view.error is not None
    assert over_view.error.startswith("step budget exceeded: more than 50 microsteps")


def _error(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json()["error"]
    return body


async def test_tenant_limits_through_the_admin_api(database_dsn: str) -> None:
    async with running_api(database_dsn) as api:
        await _tenant_limits(api)


async def _tenant_limits(api: Api) -> None:
    acme, acme_key = api.tenants["acme"]
    _, globex_key = api.tenants["globex"]
    limits_url = f"/v1/admin/tenants/{acme}/limits"
    async with api.client(ADMIN_KEY) as admin, api.client(acme_key) as client:
        fresh = await admin.get(limits_url)
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["tenantId"] == acme
        assert fresh.json()["overrides"] == {}
        defaults = fresh.json()["limits"]
        assert (defaults["maxRegions"], defaults["maxStates"]) == (1000, 5000)

        # Over a default limit: 422 with the path of the offending state.
        wide = await client.post("/v1/definitions", json={"spec": parallel(1001)})
        assert (wide.status_code, _error(wide)["code"]) == (422, "invalid_spec")
        assert _error(wide)["details"][0]["path"] == ""
        assert "(maxRegions)" in _error(wide)["details"][0]["message"]
        assert (
            await client.post("/v1/definitions", json={"spec": parallel(1000)})
        ).status_code == 201

        # The hello workflow has 3 states: allowed at 3, refused at 2, for acme only.
        put = await admin.put(limits_url, json={"maxStates": 2, "maxDepth": 4})
        assert put.status_code == 200, put.text
        assert put.json()["overrides"] == {"maxStates": 2, "maxDepth": 4}
        assert put.json()["limits"] == {**defaults, "maxStates": 2, "maxDepth": 4}
        assert (await admin.get(limits_url)).json() == put.json()
        refused = await client.post("/v1/definitions", json={"spec": HELLO})
        assert (refused.status_code, _error(refused)["code"]) == (422, "invalid_spec")
        (detail,) = _error(refused)["details"]
        assert detail["path"] == "states.done"
        assert "more than 2 states" in detail["message"]
        async with api.client(globex_key) as other:
            assert (await other.post("/v1/definitions", json={"spec": HELLO})).status_code == 201
        missing = await client.get("/v1/definitions/hello-workflow")
        assert missing.status_code == 404  # nothing was stored for acme

        # Bad bodies change nothing; {} returns to the defaults.
        for body in ({"maxStates": 0}, {"maxStates": "3"}, {"maxWidgets": 1}):
            bad = await admin.put(limits_url, json=body)
            assert (bad.status_code, _error(bad)["code"]) == (400, "invalid_request"), body
        assert (await admin.get(limits_url)).json() == put.json()
        reset = await admin.put(limits_url, json={})
        assert (reset.json()["overrides"], reset.json()["limits"]) == ({}, defaults)
        assert (await client.post("/v1/definitions", json={"spec": HELLO})).status_code == 201

        # The Python client speaks the same routes.
        async with AsyncClient(api.url, ADMIN_KEY) as sf:
            got = await sf.set_tenant_limits(acme, {"maxTransitions": 9})
            assert (got.tenant_id, got.overrides) == (acme, {"maxTransitions": 9})
            assert got.limits == {**defaults, "maxTransitions": 9}
            assert await sf.tenant_limits(acme) == got
            assert (await sf.set_tenant_limits(acme, {})).limits == defaults

        # Unknown tenants and non-admin keys.
        assert (await admin.get("/v1/admin/tenants/nobody/limits")).status_code == 404
        assert (await admin.put("/v1/admin/tenants/nobody/limits", json={})).status_code == 404
        assert (await client.get(limits_url)).status_code in (401, 403)
