"""The OpenAPI document is exact enough for generated clients (issue #19, item 4).

Built from the app without serving it: every route reads JSON bodies through the one
strict parser, every operation's answers are typed with the real models, errors with the
``ErrorResponse`` shape, and the bearer scheme is declared on every ``/v1`` route. The
served document is exercised by ``tests/integration/test_api_schemathesis.py`` (every
check) and ``test_api_generated_client.py`` (a generated client).
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.routing import APIRoute

from statefleet.api import ApiSettings, create_app
from statefleet.api.jsonbody import StrictJsonRoute

ERROR_REF = "#/components/schemas/ErrorResponse"
#: Where a well-formed body can still be refused as a whole (docs/api.md, "Errors").
ANSWERS_422 = {
    ("post", "/v1/definitions"),
    ("post", "/v1/definitions/{key}/upgrades"),
    ("post", "/v1/schedules"),
}


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app(ApiSettings(admin_key="admin"))


@pytest.fixture(scope="module")
def document(app: Any) -> dict[str, Any]:
    result: dict[str, Any] = app.openapi()
    return result


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, by_method in document["paths"].items()
        for method, operation in by_method.items()
    ]


def api_routes(routes: list[Any]) -> list[APIRoute]:
    """The operations, including those of included routers (FastAPI keeps those apart)."""
    found: list[APIRoute] = []
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            found.extend(api_routes(included.routes))
        elif isinstance(route, APIRoute):
            found.append(route)
    return found


def test_every_route_reads_its_body_with_the_strict_parser(app: Any) -> None:
    routes = api_routes(app.routes)
    assert len(routes) > 20
    assert routes
    # The push routes read their raw body themselves and the console takes none.
    public = [r for r in routes if r.include_in_schema or r.body_field is not None]
    assert [r.path for r in public if not isinstance(r, StrictJsonRoute)] == []


def test_successes_are_typed_with_the_real_models(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        for status, answer in operation["responses"].items():
            if not status.startswith("2") or status == "204":
                continue
            content = answer["content"]
            if "text/plain" in content:  # the Mermaid graph and Prometheus metrics
                assert set(content) == {"text/plain"}, (method, path)
                continue
            schema = content["application/json"]["schema"]
            assert schema.get("$ref", "").startswith("#/components/schemas/"), (
                method,
                path,
                status,
                schema,
            )


def test_every_error_status_has_the_error_shape(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    error = schemas["ErrorBody"]
    assert set(error["required"]) == {"code", "message"}
    for method, path, operation in operations(document):
        statuses = {s for s in operation["responses"] if s[0] in "45"}
        for status in statuses:
            answer = operation["responses"][status]
            assert answer["content"] == {"application/json": {"schema": {"$ref": ERROR_REF}}}, (
                method,
                path,
                status,
            )
            assert answer["description"]
        if path.startswith("/v1/"):
            assert {"401", "403"} <= statuses, (method, path)
            assert operation["security"] == [{"HTTPBearer": []}], (method, path)
        if operation.get("requestBody"):
            assert {"400", "408", "413"} <= statuses, (method, path)
        assert ("422" in statuses) == ((method, path) in ANSWERS_422), (method, path)


def test_the_bearer_scheme_and_operation_ids(document: dict[str, Any]) -> None:
    scheme = document["components"]["securitySchemes"]["HTTPBearer"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    assert {"definitions_deploy", "instances_start", "tasks_complete"} <= set(ids)


def test_identifiers_carry_the_deploy_rule(document: dict[str, Any]) -> None:
    from statefleet.engine.spec.identifiers import DEFINITION_ID, EVENT_TYPE, IDEMPOTENCY_KEY

    schemas = document["components"]["schemas"]
    assert schemas["StartIn"]["properties"]["definitionKey"]["pattern"] == DEFINITION_ID.pattern
    assert schemas["EventIn"]["properties"]["type"]["pattern"] == EVENT_TYPE.pattern
    key = schemas["StartIn"]["properties"]["idempotencyKey"]["anyOf"][0]
    assert key["pattern"] == IDEMPOTENCY_KEY.pattern
    (path_key,) = document["paths"]["/v1/definitions/{key}"]["get"]["parameters"]
    assert path_key["schema"]["pattern"] == DEFINITION_ID.pattern
