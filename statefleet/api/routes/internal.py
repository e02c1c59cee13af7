"""``POST /internal/queues/{queue}``: where a push driver (Cloud Tasks) delivers jobs.

Why the answers are what they are: Cloud Tasks retries every non-2xx, 4xx included.
So a job that is done, already done, or can never succeed (a malformed body, recorded
as a dead letter in Postgres first) gets a 2xx; a handler failure or a process with no
consumer yet gets a 5xx so the broker retries; a request without the configured
``X-Queue-Secret`` gets 401 and touches nothing, and so does one without a valid OIDC
token when ``WORKFLOW_CLOUDTASKS_SERVICE_ACCOUNT`` is configured (see ``oidc``). These
routes take no tenant API key (only the queue secret), and the tenant routes take no
queue secret (only bearer keys).
Routing is by the URL path, never by ``X-CloudTasks-QueueName``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from typing import Any

import httpx
from fastapi import APIRouter, Request, Response

from statefleet.api.errors import error_response
from statefleet.api.jsonbody import InvalidJson, parse_json
from statefleet.api.oidc import OidcError, OidcVerifier
from statefleet.api.state import app_state
from statefleet.drivers.push import NoConsumerError, PushBridge
from statefleet.engine.ports import MalformedJobError, QueueJob, parse_job
from statefleet.engine.runtime.outbox import insert_dead_letter

__all__ = ["QUEUE_SECRET_VARIABLE", "router"]

log = logging.getLogger(__name__)

QUEUE_SECRET_VARIABLE = "WORKFLOW_QUEUE_SECRET"

router = APIRouter(tags=["internal"], include_in_schema=False)


@router.post("/internal/queues/{queue}")
async def push(queue: str, request: Request) -> Response:
    """Hand one pushed job to this process's consumer of ``queue``."""
    state = app_state(request)
    secret = state.settings.env.get(QUEUE_SECRET_VARIABLE, "").strip()
    if secret:
        given = request.headers.get("x-queue-secret", "")
        if not hmac.compare_digest(given.encode(), secret.encode()):
            return error_response(401, "unauthorized", "missing or wrong X-Queue-Secret")
    verifier = _verifier(request, state.settings.env)
    if verifier is not None:
        try:
            await verifier.verify(request.headers.get("authorization"))
        except OidcError as exc:
            return error_response(401, "unauthorized", str(exc))
        except httpx.HTTPError as exc:  # cannot fetch the certificates: let the broker retry
            return error_response(503, "oidc_unavailable", f"cannot verify the token: {exc}")
    bridge: PushBridge | None = getattr(state.queue, "push_bridge", None)
    if bridge is None:
        return error_response(503, "not_a_push_driver", "this process's queue driver is not push")
    raw = await request.body()
    name: object = None
    data: object = None
    try:
        try:
            body = parse_json(raw)  # the API's one reader: no integer silently a float
        except InvalidJson as exc:
            raise MalformedJobError(queue, f"body is not JSON: {exc.detail}") from None
        if not isinstance(body, dict):
            raise MalformedJobError(queue, "body must be a JSON object {name, data}")
        name, data = body.get("name"), body.get("data")
        job = parse_job(queue, name, data)
    except MalformedJobError as exc:
        return await _dead_letter(request, queue, name, data, raw, exc.reason)
    try:
        await bridge.deliver(job)
    except NoConsumerError as exc:
        return error_response(503, "no_consumer", str(exc), headers={"Retry-After": "1"})
    except Exception as exc:  # the handler failed: let the broker retry
        log.warning("pushed %s job failed; the broker will retry", queue, exc_info=True)
        return error_response(500, "job_failed", f"{type(exc).__name__}: {exc}")
    return Response(status_code=204)


def _verifier(request: Request, env: Mapping[str, str]) -> OidcVerifier | None:
    """One verifier per app (its certificate cache), built on first use."""
    app_state_ = request.app.state
    if not hasattr(app_state_, "statefleet_oidc"):
        app_state_.statefleet_oidc = OidcVerifier.from_env(env)
    verifier: OidcVerifier | None = app_state_.statefleet_oidc
    return verifier


async def _dead_letter(
    request: Request, queue: str, name: object, data: object, raw: bytes, reason: str
) -> Response:
    """Recorded in Postgres by this process, whatever else runs here, then a 2xx."""
    kept: dict[str, Any] = (
        data if isinstance(data, dict) else {"body": raw.decode("utf-8", "replace")}
    )
    job = QueueJob(queue, name if isinstance(name, str) else "", kept)
    async with app_state(request).pool.acquire() as connection:
        await insert_dead_letter(connection, None, job, reason)
    log.warning("dead-lettered a malformed %s job: %s", queue, reason)
    return Response(status_code=202)
