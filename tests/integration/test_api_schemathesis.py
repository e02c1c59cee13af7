"""Schemathesis against the served OpenAPI document, with every check it has.

Nothing a client sends yields a 5xx, and every answer is one the document declares:
its status, content type, headers and body schema (the real pydantic models, and the
``{"error": {...}}`` shape of each error status), valid data accepted and invalid data
refused.

The app runs under uvicorn in the test's event loop; the generated requests are sent
from a worker thread (schemathesis' ``case.call`` is synchronous), so the server keeps
serving while hypothesis drives it. Bounded: a few examples per operation, valid and
invalid, against real Postgres and a running worker.
"""

from __future__ import annotations

import asyncio
from typing import Any

import hypothesis
import pytest
import schemathesis
from api_support import ADMIN_KEY, HELLO, running_api
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

pytestmark = pytest.mark.asyncio

EXAMPLES_PER_OPERATION = 12

#: Valid data (as the document describes it) must get one of these. The defaults minus
#: 3xx/429/5xx (this API answers none of them to valid data), plus what docs/api.md
#: documents for data no JSON Schema can describe: a spec that is well-formed but not a
#: workflow (422 ``invalid_spec``), a ``cursor`` this API never returned and an integer
#: beyond 64 bits inside a free-form object (400).
ACCEPTED = ["2xx", "401", "403", "404", "409"]
SEMANTIC = {
    ("POST", "/v1/definitions"): ["400", "422"],
    ("GET", "/v1/instances"): ["400"],
    ("GET", "/v1/tasks"): ["400"],
    ("POST", "/v1/instances"): ["400"],
    ("POST", "/v1/instances/{instance_id}/events"): ["400"],
    ("POST", "/v1/batches"): ["400"],
    ("POST", "/v1/tasks/{task_id}/complete"): ["400"],
    # A state map naming a state of neither version (422 invalid_upgrade).
    ("POST", "/v1/definitions/{key}/upgrades"): ["422"],
    # A cron expression, time zone or definition that makes no schedule (422
    # invalid_schedule), a cursor this API never returned, a huge integer in the input.
    ("POST", "/v1/schedules"): ["400", "422"],
    ("GET", "/v1/schedules"): ["400"],
}


def config() -> SchemathesisConfig:
    operations = [
        {
            "include-method": method,
            "include-path": path,
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED + extra}},
        }
        for (method, path), extra in SEMANTIC.items()
    ]
    return SchemathesisConfig.from_dict(
        {
            "checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}},
            "operations": operations,
        }
    )


def fuzz(base_url: str, schema_doc: dict[str, Any], tenant_key: str) -> list[str]:
    """Runs every operation's strategy; returns the failures (empty when all is well)."""
    schema = schemathesis.openapi.from_dict(schema_doc, config=config())
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        key = ADMIN_KEY if operation.path.startswith("/v1/admin") else tenant_key
        case_headers = {"Authorization": f"Bearer {key}"}
        strategy = st.one_of(
            operation.as_strategy(GenerationMode.POSITIVE),
            operation.as_strategy(GenerationMode.NEGATIVE),
        )

        @hypothesis.settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
        )
        @hypothesis.given(case=strategy)
        def run(case: Any) -> None:
            # Called before the loop moves on, so the late binding is the right one.
            response = case.call(base_url=base_url, headers=case_headers)  # noqa: B023
            try:
                case.validate_response(response)  # every check
            except (AssertionError, BaseExceptionGroup) as failure:  # Failure, FailureGroup
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:300]} ({failure})"
                )

        run()
    return failures


async def test_no_generated_request_gets_a_server_error(database_dsn: str) -> None:
    async with running_api(database_dsn) as api:
        tenant_key = api.tenants["acme"][1]
        async with api.client(tenant_key) as client:
            await client.post("/v1/definitions", json={"spec": HELLO})
            await client.post("/v1/instances", json={"definitionKey": "hello-workflow"})
            document = (await client.get("/openapi.json")).json()
        failures = await asyncio.to_thread(fuzz, api.url, document, tenant_key)
    assert failures == []
