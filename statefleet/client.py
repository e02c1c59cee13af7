"""Python client for the statefleet HTTP API (``docs/api.md``), sync and async.

Every API call is described once, as data: a :class:`_Call` names the method, the
path, the query and the body, and how to parse the answer. :class:`Client` and
:class:`AsyncClient` are two thin executors over those descriptions (one blocking on
``httpx.Client``, one awaiting ``httpx.AsyncClient``), so the two cannot drift apart
on a path, a field name or an error mapping. Only the calls that loop (pagination,
``wait``, ``start_many``'s chunks) are written twice, because sleeping and iterating
differ between the two worlds.

Both take an injectable ``transport``: tests run the real app in-process with
``httpx.ASGITransport`` (async) or fake the contract with ``httpx.MockTransport``.

Results are pydantic models with snake_case attributes over the API's camelCase
JSON; unknown fields are kept (``extra="allow"``), so a newer server does not break an
older client. Errors raise :class:`StatefleetError` subclasses carrying the API's
``code`` and ``message``; a server that cannot be reached or does not answer in time
raises one too (:class:`ConnectionFailed`, :class:`RequestTimedOut`), never an httpx
exception, and each message says what to do next.

Where to connect is resolved once, in :func:`resolve_connection`, for the client and
the CLI alike: arguments, then ``STATEFLEET_URL`` / ``STATEFLEET_API_KEY``, then the
credentials file ``statefleet up`` keeps (:mod:`statefleet.credentials`).
"""

from __future__ import annotations

import asyncio
import builtins
import functools
import itertools
import os
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from dataclasses import field
from datetime import datetime
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload
from urllib.parse import quote, urlsplit, urlunsplit

import httpx
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from statefleet.credentials import credentials_path, read_credentials, same_server
from statefleet.engine.record import record

__all__ = [
    "AsyncClient",
    "AuthError",
    "BatchCounts",
    "BatchProgress",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "Definition",
    "HistoryEntry",
    "Instance",
    "InvalidRequest",
    "InvalidUrl",
    "KeyCreated",
    "KeyInfo",
    "NotFound",
    "RequestTimedOut",
    "Schedule",
    "ServerError",
    "StartedBatch",
    "StatefleetError",
    "Task",
    "TaskLimit",
    "TenantCreated",
    "TenantLimits",
    "TenantScheduling",
    "Upgrade",
    "UpgradeCounts",
    "UpgradeEntry",
    "UpgradeProgress",
    "resolve_connection",
]

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT = 30.0
#: Instance statuses after which nothing more happens; ``wait`` returns on them.
FINISHED_STATUSES = frozenset({"done", "failed", "cancelled"})

T = TypeVar("T")
P = ParamSpec("P")


# --- results ----------------------------------------------------------------


class _Model(BaseModel):
    """camelCase on the wire, snake_case in Python; unknown fields kept, values frozen."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", frozen=True
    )


class Definition(_Model):
    """A deployed version of a workflow spec; ``spec`` is absent in listings."""

    id: str
    key: str
    version: int
    checksum: str
    created_at: datetime
    spec: dict[str, Any] | None = None


class Instance(_Model):
    """One run of a definition: its status and its latest snapshot."""

    id: str
    tenant_id: str
    definition_key: str
    definition_version: int
    status: str
    value: Any = None
    context: Any = None
    output: Any = None
    error: Any = None
    created_at: datetime
    updated_at: datetime | None = None
    batch_id: str | None = None
    priority: int | None = None

    @property
    def finished(self) -> bool:
        """True once the instance is done, failed or cancelled."""
        return self.status in FINISHED_STATUSES


class HistoryEntry(_Model):
    """One applied event in an instance's audit log, in ``seq`` order."""

    seq: int
    event_id: str | None = None
    type: str
    payload: Any = None
    state_before: Any = None
    state_after: Any = None
    effects: Any = None
    handled: bool | None = None
    error: Any = None
    created_at: datetime


class Task(_Model):
    """A side effect the engine runs (or a ``HUMAN`` task someone completes)."""

    id: str
    instance_id: str
    kind: str | None = None
    type: str
    name: str | None = None
    input: Any = None
    output: Any = None
    status: str
    run_at: datetime | None = None
    attempts: int = 0
    max_attempts: int | None = None
    last_error: str | None = None
    idempotency_key: str | None = None
    completion_event: str | None = None
    failure_event: str | None = None
    created_at: datetime
    updated_at: datetime | None = None


class StartedBatch(_Model):
    """The answer to one ``POST /v1/batches``: its id and how many instances it started."""

    batch_id: str
    count: int


class BatchCounts(_Model):
    """Instances of a batch by status."""

    running: int = 0
    done: int = 0
    failed: int = 0
    cancelled: int = 0


class BatchProgress(_Model):
    """A batch's progress: ``total`` instances, ``counts`` by status."""

    batch_id: str
    total: int
    counts: BatchCounts
    priority: int | None = None

    @property
    def finished(self) -> int:
        """Instances that will not change any more (done, failed or cancelled)."""
        return self.counts.done + self.counts.failed + self.counts.cancelled


class UpgradeCounts(_Model):
    """Instances by dry-run verdict."""

    compatible: int = 0
    diverged: int = 0
    unmappable: int = 0
    error: int = 0


class UpgradeProgress(_Model):
    """Of the instances an apply chose: moved, skipped, still pending."""

    chosen: int = 0
    moved: int = 0
    skipped: int = 0
    pending: int = 0


class UpgradeEntry(_Model):
    """One instance's verdict (docs/upgrades.md): and, for an apply, what became of it."""

    instance_id: str
    verdict: str
    target_state: Any = None
    divergence: dict[str, Any] | None = None
    message: str | None = None
    seq: int | None = None
    tasks: builtins.list[dict[str, Any]] = []
    chosen: bool = False
    outcome: str = "planned"
    applied_verdict: str | None = None


class Upgrade(_Model):
    """An upgrade request's report: counts by verdict, progress, a page of entries."""

    id: str
    definition_key: str
    from_version: int
    to_version: int
    state_map: dict[str, str] = {}
    context_defaults: dict[str, Any] = {}
    dry_run: bool
    force: bool
    status: str
    total: int
    counts: UpgradeCounts
    progress: UpgradeProgress
    items: builtins.list[UpgradeEntry] = []
    next_cursor: str | None = None
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None

    @property
    def finished(self) -> bool:
        """A dry run once planned; an apply once every chosen instance moved or was skipped."""
        return self.status in ("done", "failed")


class Schedule(_Model):
    """A schedule (docs/schedules.md): what it starts, when, and what it did last."""

    id: str
    definition_key: str
    version: int | None = None
    cron: str | None = None
    every: int | None = None
    timezone: str = "UTC"
    input: dict[str, Any] = {}
    overlap: str
    catch_up: str
    paused: bool
    next_run_at: datetime
    buffered_at: datetime | None = None
    last_tick_at: datetime | None = None
    last_instance_id: str | None = None
    skipped_ticks: int = 0
    created_at: datetime
    updated_at: datetime


class TenantCreated(_Model):
    """A new tenant and its first API key (shown once: store it)."""

    tenant_id: str
    api_key: str


class KeyCreated(_Model):
    """A new API key of a tenant (shown once: store it)."""

    key_id: str
    api_key: str


class KeyInfo(_Model):
    """An API key as listed: its id and dates, never its secret."""

    key_id: str
    created_at: datetime
    revoked_at: datetime | None = None


class TenantLimits(_Model):
    """A tenant's spec limits: ``limits`` apply to its deploys (wire names, ``maxStates``...);
    ``overrides`` are the ones set for it, the rest are the server's defaults."""

    tenant_id: str
    limits: dict[str, int]
    overrides: dict[str, int]


class TaskLimit(_Model):
    """At most ``concurrency`` attempts of a task type running at once across the cluster,
    at most ``per_second`` (``perSecond`` on the wire) starts a second; None: no such limit."""

    concurrency: int | None = None
    per_second: float | None = None


class TenantScheduling(_Model):
    """A tenant's share of the engine against other tenants with waiting work (``weight``)
    and its limits per task type (docs/scheduling.md)."""

    weight: int = 1
    task_limits: dict[str, TaskLimit] = {}


class _Page(_Model, Generic[T]):
    items: builtins.list[T]
    next_cursor: str | None = None


# --- errors -----------------------------------------------------------------


#: Where API keys come from, said after every 401.
KEYS_HINT = (
    "API keys come from `statefleet up` (it prints one and keeps it in "
    "$STATEFLEET_HOME/credentials.json), `statefleet tenants create NAME` and "
    "`statefleet keys create TENANT_ID`; give one with STATEFLEET_API_KEY "
    "(the CLI's --api-key, the client's api_key=)"
)


class StatefleetError(Exception):
    """An error answer from the API, or no answer at all.

    Attributes:
        status: the HTTP status code; 0 when no answer came (the subclasses
            :class:`ConnectionFailed`, :class:`RequestTimedOut`, :class:`InvalidUrl`).
        code: the API's machine-readable code (``unknown_instance``, ...), or the
            client's own (``unreachable``, ``timeout``, ``invalid_url``).
        message: the API's sentence, or the client's.
        details: extra data; for ``invalid_spec``, a list of ``{path, message}``.
        hint: what to do next, when the client knows (e.g. where keys come from).
    """

    def __init__(
        self, status: int, code: str, message: str, details: Any = None, hint: str | None = None
    ) -> None:
        super().__init__(f"{code}: {message}" + (f"\n{hint}" if hint else ""))
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.hint = hint


class ConnectionFailed(StatefleetError):
    """No server answered: nothing listens at the URL, or the connection broke.

    A request whose connection broke after it was sent may have been applied; the
    message says so.
    """


class RequestTimedOut(StatefleetError):
    """The server did not answer within the client's ``timeout``.

    The request may have been applied: retry with an idempotency key or event id.
    """


class InvalidUrl(StatefleetError, ValueError):
    """The server URL cannot be right (no ``http://``, or ending in ``/v1``); raised
    when the client is made, before any request."""


class AuthError(StatefleetError):
    """401 (no, bad or revoked key) or 403 (the wrong kind of key for the route)."""


class NotFound(StatefleetError):
    """404: unknown or another tenant's definition, version, instance, task or batch."""


class Conflict(StatefleetError):
    """409: the instance is finished, or the task is not in a state that allows it."""


class InvalidRequest(StatefleetError):
    """400/413/422: the request was refused as sent; ``details`` lists spec errors."""


class ServerError(StatefleetError):
    """5xx: the server failed; the request may be retried."""


_BY_STATUS: dict[int, type[StatefleetError]] = {
    400: InvalidRequest,
    401: AuthError,
    403: AuthError,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    422: InvalidRequest,
}


def _error_for(response: httpx.Response) -> StatefleetError:
    """Maps an error answer to its exception, tolerating bodies not in the API's shape.

    A proxy or a crashed server may answer HTML or nothing; the status then decides
    the class and the code is ``http_<status>``.
    """
    status = response.status_code
    code, message, details = f"http_{status}", response.reason_phrase or "error", None
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
        details = error.get("details")
    cls = ServerError if status >= 500 else _BY_STATUS.get(status, StatefleetError)
    hint = None
    if status == 401:
        sent = "authorization" in response.request.headers
        hint = (
            "the server does not know this key (revoked, or made by another server). "
            if sent
            else "no API key was sent. "
        ) + KEYS_HINT
    return cls(status, code, message, details, hint)


def _transport_error(
    error: httpx.TransportError, url: str, request: str, timeout: float
) -> StatefleetError:
    """The :class:`StatefleetError` for an httpx failure without an answer."""
    reason = str(error) or type(error).__name__
    if isinstance(error, httpx.ConnectError | httpx.ConnectTimeout):
        return ConnectionFailed(
            0,
            "unreachable",
            f"cannot connect ({reason}): is `statefleet up` running? ({url}); "
            "to use another server, set STATEFLEET_URL",
        )
    if isinstance(error, httpx.TimeoutException):
        return RequestTimedOut(
            0,
            "timeout",
            f"{request} timed out after {timeout:g} s; the request may have been applied",
        )
    return ConnectionFailed(
        0,
        "connection_failed",
        f"{request}: the connection to {url} failed ({reason}); the request may have been applied",
    )


# --- calls as data ----------------------------------------------------------


@record
class _Call(Generic[T]):
    """One HTTP request and how to read its successful answer."""

    method: str
    path: str
    parse: Callable[[httpx.Response], T]
    params: Mapping[str, Any] = field(default_factory=dict)
    body: Any = None
    has_body: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)

    def request_kwargs(self) -> dict[str, Any]:
        params = {k: v for k, v in self.params.items() if v is not None}
        kwargs: dict[str, Any] = {"params": params}
        if self.has_body:
            kwargs["json"] = self.body
        if self.headers:
            kwargs["headers"] = dict(self.headers)
        return kwargs


def _answer(call: _Call[T], response: httpx.Response) -> T:
    """The parsed answer to ``call``, or the :class:`StatefleetError` the API sent."""
    if response.is_error:
        raise _error_for(response)
    return call.parse(response)


def _poll_delay(
    instance_id: str, instance: Instance, deadline: float, poll_interval: float
) -> float | None:
    """``wait``'s step: None once ``instance`` finished, else how long to sleep.

    Raises:
        TimeoutError: it is still running at ``deadline`` (``time.monotonic()``).
    """
    if instance.finished:
        return None
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError(f"instance {instance_id} is still {instance.status}")
    return min(poll_interval, remaining)


def _idempotency(key: str | None) -> dict[str, str]:
    """The ``Idempotency-Key`` header of a starting request, when there is a key."""
    return {"Idempotency-Key": key} if key is not None else {}


def _model(cls: type[_Model]) -> Callable[[httpx.Response], Any]:
    return lambda response: cls.model_validate(response.json())


def _items(cls: type[_Model]) -> Callable[[httpx.Response], Any]:
    return lambda response: [cls.model_validate(item) for item in response.json()["items"]]


def _page(cls: type[_Model]) -> Callable[[httpx.Response], Any]:
    return lambda response: _Page[cls].model_validate(response.json())  # type: ignore[valid-type]


def _body(**fields: Any) -> dict[str, Any]:
    """A request body without the optional fields left at None."""
    return {k: v for k, v in fields.items() if v is not None}


def _seg(value: str | int) -> str:
    """A path segment: ids and keys come from users, so ``/`` or ``?`` must not escape it."""
    return quote(str(value), safe="")


def _iso(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _deploy(spec: Mapping[str, Any], key: str | None = None) -> _Call[Definition]:
    """Deploys ``spec`` as a new version of ``key`` (default: the spec's ``id``).

    Deploying the same spec again returns the existing version. A spec that does not
    validate raises :class:`InvalidRequest` with ``details`` naming each JSON path.
    """
    return _Call(
        "POST", "/v1/definitions", _model(Definition), body=_body(spec=spec, key=key), has_body=True
    )


def _definition(key: str, version: int | None = None) -> _Call[Definition]:
    """One definition with its spec: the latest version, or ``version``."""
    path = f"/v1/definitions/{_seg(key)}" + (
        f"/versions/{_seg(version)}" if version is not None else ""
    )
    return _Call("GET", path, _model(Definition))


def _definitions() -> _Call[builtins.list[Definition]]:
    """The latest version of every definition of the tenant (without specs)."""
    return _Call("GET", "/v1/definitions", _items(Definition))


def _graph(key: str, version: int | None = None) -> _Call[str]:
    """A definition drawn as a Mermaid ``stateDiagram-v2`` (text)."""
    return _Call(
        "GET", f"/v1/definitions/{_seg(key)}/graph", lambda r: r.text, params={"version": version}
    )


def _start(
    key: str,
    input: Mapping[str, Any] | None = None,
    *,
    version: int | None = None,
    idempotency_key: str | None = None,
    priority: int | None = None,
) -> _Call[Instance]:
    """Starts an instance of definition ``key`` (latest version unless ``version``).

    With ``idempotency_key`` (sent as the ``Idempotency-Key`` header, and in the body
    for servers that predate the header), starting again with the same key returns the
    instance the first call created instead of starting another: safe to retry after a
    timeout. ``priority``: 0 to 10, higher first (the server's default: 10, interactive).
    """
    body = _body(
        definitionKey=key,
        version=version,
        input=input,
        idempotencyKey=idempotency_key,
        priority=priority,
    )
    headers = _idempotency(idempotency_key)
    return _Call(
        "POST", "/v1/instances", _model(Instance), body=body, has_body=True, headers=headers
    )


def _start_batch(
    key: str,
    inputs: builtins.list[Any],
    version: int | None = None,
    idempotency_key: str | None = None,
    priority: int | None = None,
) -> _Call[StartedBatch]:
    body = _body(definitionKey=key, version=version, inputs=inputs, priority=priority)
    headers = _idempotency(idempotency_key)
    return _Call(
        "POST", "/v1/batches", _model(StartedBatch), body=body, has_body=True, headers=headers
    )


def _chunk_key(idempotency_key: str | None, index: int) -> str | None:
    """The key of ``start_many``'s ``index``-th chunk: each chunk is a batch of its own."""
    return None if idempotency_key is None else f"{idempotency_key}:{index}"


def _batch(batch_id: str) -> _Call[BatchProgress]:
    """A batch's progress: its total and its instances by status."""
    return _Call("GET", f"/v1/batches/{_seg(batch_id)}", _model(BatchProgress))


def _upgrade(
    key: str,
    from_version: int,
    to_version: int,
    state_map: Mapping[str, str] | None = None,
    context_defaults: Mapping[str, Any] | None = None,
    instance_ids: Iterable[str] | None = None,
    dry_run: bool = True,
    force: bool = False,
) -> _Call[Upgrade]:
    """Plans moving the running instances of ``key`` from one version to another.

    A dry run (the default) replays each instance's history on ``to_version`` and
    reports a verdict per instance; ``dry_run=False`` also moves the ``compatible``
    ones (with ``force``, the ``diverged`` ones too) as a job: poll
    :meth:`Client.get_upgrade` until ``finished``. The report holds the first page of
    entries; ``get_upgrade(id, cursor=report.next_cursor)`` reads the next.
    """
    body = _body(
        fromVersion=from_version,
        toVersion=to_version,
        stateMap=dict(state_map) if state_map is not None else None,
        contextDefaults=dict(context_defaults) if context_defaults is not None else None,
        instanceIds=[str(i) for i in instance_ids] if instance_ids is not None else None,
    )
    body.update(dryRun=dry_run, force=force)
    path = f"/v1/definitions/{_seg(key)}/upgrades"
    return _Call("POST", path, _model(Upgrade), body=body, has_body=True)


def _get_upgrade(
    upgrade_id: str, cursor: str | None = None, limit: int | None = None
) -> _Call[Upgrade]:
    """An upgrade's report and progress, with the page of entries after ``cursor``."""
    params = {"cursor": cursor, "limit": limit}
    return _Call("GET", f"/v1/upgrades/{_seg(upgrade_id)}", _model(Upgrade), params=params)


def _send(
    instance_id: str,
    type: str,
    payload: Mapping[str, Any] | None = None,
    *,
    event_id: str | None = None,
) -> _Call[str]:
    """Sends an event to an instance and returns its event id once accepted.

    The event is applied asynchronously. With ``event_id``, sending the same id again
    is accepted but applied only once: safe to retry.
    """
    body = _body(type=type, payload=payload, id=event_id)
    return _Call(
        "POST",
        f"/v1/instances/{_seg(instance_id)}/events",
        lambda r: str(r.json()["eventId"]),
        body=body,
        has_body=True,
    )


def _get(instance_id: str) -> _Call[Instance]:
    """An instance: status, state value, context, output, error."""
    return _Call("GET", f"/v1/instances/{_seg(instance_id)}", _model(Instance))


def _cancel(instance_id: str) -> _Call[Instance]:
    """Cancels a running instance and its open tasks; returns it, ``cancelled``."""
    return _Call(
        "POST",
        f"/v1/instances/{_seg(instance_id)}/cancel",
        _model(Instance),
        body={},
        has_body=True,
    )


def _tasks(instance_id: str) -> _Call[builtins.list[Task]]:
    """Every task an instance created, open or not."""
    return _Call("GET", f"/v1/instances/{_seg(instance_id)}/tasks", _items(Task))


def _task(task_id: str) -> _Call[Task]:
    """One task."""
    return _Call("GET", f"/v1/tasks/{_seg(task_id)}", _model(Task))


def _complete_task(task_id: str, output: Any = None) -> _Call[Task]:
    """Completes a pending ``HUMAN`` task with ``output``; its completion event fires."""
    return _Call(
        "POST",
        f"/v1/tasks/{_seg(task_id)}/complete",
        _model(Task),
        body={"output": output},
        has_body=True,
    )


def _fail_task(task_id: str, error: str) -> _Call[Task]:
    """Fails a pending ``HUMAN`` task; its failure event fires, or the instance fails."""
    return _Call(
        "POST",
        f"/v1/tasks/{_seg(task_id)}/fail",
        _model(Task),
        body={"error": error},
        has_body=True,
    )


def _retry_task(task_id: str) -> _Call[Task]:
    """Makes a failed task pending again; an instance it failed is running again."""
    return _Call("POST", f"/v1/tasks/{_seg(task_id)}/retry", _model(Task), body={}, has_body=True)


def _instances_page(
    cursor: str | None,
    limit: int,
    definition_key: str | None,
    status: str | None,
    created_after: datetime | str | None,
    created_before: datetime | str | None,
) -> _Call[_Page[Instance]]:
    params = {
        "definitionKey": definition_key,
        "status": status,
        "createdAfter": _iso(created_after),
        "createdBefore": _iso(created_before),
        "limit": limit,
        "cursor": cursor,
    }
    return _Call("GET", "/v1/instances", _page(Instance), params=params)


def _history_page(instance_id: str, after: str | None, limit: int) -> _Call[_Page[HistoryEntry]]:
    params = {"after": after, "limit": limit}
    return _Call(
        "GET", f"/v1/instances/{_seg(instance_id)}/history", _page(HistoryEntry), params=params
    )


def _tasks_page(
    cursor: str | None, limit: int, status: str | None, task_type: str | None
) -> _Call[_Page[Task]]:
    params = {"status": status, "type": task_type, "limit": limit, "cursor": cursor}
    return _Call("GET", "/v1/tasks", _page(Task), params=params)


def _create_schedule(
    key: str,
    *,
    cron: str | None = None,
    every: int | None = None,
    timezone: str | None = None,
    input: Mapping[str, Any] | None = None,
    version: int | None = None,
    overlap: str | None = None,
    catch_up: str | None = None,
) -> _Call[Schedule]:
    """Starts an instance of ``key`` on ``cron`` (read in ``timezone``, IANA, default UTC)
    or every ``every`` seconds; exactly one of the two.

    ``overlap``: ``skip`` (default), ``allow`` or ``bufferOne``, what a tick does while the
    previous instance still runs; ``catch_up``: ``skip`` (default) or ``all``, what happens
    to ticks missed while no engine ran. A bad cron expression, time zone or definition
    raises :class:`InvalidRequest` (422 ``invalid_schedule``) naming the field.
    """
    body = _body(
        definitionKey=key,
        version=version,
        cron=cron,
        every=every,
        timezone=timezone,
        input=dict(input) if input is not None else None,
        overlap=overlap,
        catchUp=catch_up,
    )
    return _Call("POST", "/v1/schedules", _model(Schedule), body=body, has_body=True)


def _get_schedule(schedule_id: str) -> _Call[Schedule]:
    """One schedule: its rule, policies, next tick and last instance."""
    return _Call("GET", f"/v1/schedules/{_seg(schedule_id)}", _model(Schedule))


def _pause_schedule(schedule_id: str) -> _Call[Schedule]:
    """Pauses a schedule: it starts nothing until resumed (pausing twice is fine)."""
    return _Call(
        "POST",
        f"/v1/schedules/{_seg(schedule_id)}/pause",
        _model(Schedule),
        body={},
        has_body=True,
    )


def _resume_schedule(schedule_id: str) -> _Call[Schedule]:
    """Resumes a schedule from its first tick after now (missed ticks do not run)."""
    return _Call(
        "POST",
        f"/v1/schedules/{_seg(schedule_id)}/resume",
        _model(Schedule),
        body={},
        has_body=True,
    )


def _delete_schedule(schedule_id: str) -> _Call[None]:
    """Deletes a schedule; the instances it started keep running."""
    return _Call("DELETE", f"/v1/schedules/{_seg(schedule_id)}", lambda _: None)


def _schedules_page(cursor: str | None, limit: int) -> _Call[_Page[Schedule]]:
    params = {"limit": limit, "cursor": cursor}
    return _Call("GET", "/v1/schedules", _page(Schedule), params=params)


def _chunks(inputs: Iterable[Any], size: int) -> Iterator[builtins.list[Any]]:
    """Consecutive lists of at most ``size`` items; reads ``inputs`` lazily."""
    if size < 1:
        raise ValueError("chunk_size must be at least 1")
    iterator = iter(inputs)
    while chunk := builtins.list(itertools.islice(iterator, size)):
        yield chunk


def _create_tenant(name: str) -> _Call[TenantCreated]:
    """Creates a tenant and its first key (admin key only)."""
    return _Call(
        "POST", "/v1/admin/tenants", _model(TenantCreated), body={"name": name}, has_body=True
    )


def _create_key(tenant_id: str) -> _Call[KeyCreated]:
    """Adds an API key to a tenant (admin key only)."""
    return _Call(
        "POST",
        f"/v1/admin/tenants/{_seg(tenant_id)}/keys",
        _model(KeyCreated),
        body={},
        has_body=True,
    )


def _keys(tenant_id: str) -> _Call[builtins.list[KeyInfo]]:
    """A tenant's API keys, without their secrets (admin key only)."""
    return _Call("GET", f"/v1/admin/tenants/{_seg(tenant_id)}/keys", _items(KeyInfo))


def _revoke_key(tenant_id: str, key_id: str) -> _Call[None]:
    """Revokes a tenant's API key for good; revoking twice is fine (admin key only)."""
    return _Call(
        "DELETE", f"/v1/admin/tenants/{_seg(tenant_id)}/keys/{_seg(key_id)}", lambda _: None
    )


def _tenant_limits(tenant_id: str) -> _Call[TenantLimits]:
    """The spec limits a tenant's deploys are checked against (admin key only)."""
    return _Call("GET", f"/v1/admin/tenants/{_seg(tenant_id)}/limits", _model(TenantLimits))


def _set_tenant_limits(tenant_id: str, limits: Mapping[str, int]) -> _Call[TenantLimits]:
    """Replaces a tenant's limit overrides, by wire name (``{"maxStates": 200}``); ``{}``
    returns it to the defaults (admin key only)."""
    return _Call(
        "PUT",
        f"/v1/admin/tenants/{_seg(tenant_id)}/limits",
        _model(TenantLimits),
        body=dict(limits),
        has_body=True,
    )


def _tenant_scheduling(tenant_id: str) -> _Call[TenantScheduling]:
    """A tenant's fair-share weight and task limits (admin key only)."""
    return _Call("GET", f"/v1/admin/tenants/{_seg(tenant_id)}/scheduling", _model(TenantScheduling))


def _set_tenant_scheduling(
    tenant_id: str,
    *,
    weight: int = 1,
    task_limits: Mapping[str, Mapping[str, Any] | TaskLimit] | None = None,
) -> _Call[TenantScheduling]:
    """Replaces a tenant's scheduling settings (admin key only): ``weight`` 1 to 1000,
    ``task_limits`` per task type, ``{"EMAIL": {"concurrency": 5, "perSecond": 50}}``
    (or :class:`TaskLimit` values). Limits left out are removed."""
    limits = {
        task_type: limit.model_dump(by_alias=True, exclude_none=True)
        if isinstance(limit, TaskLimit)
        else dict(limit)
        for task_type, limit in (task_limits or {}).items()
    }
    return _Call(
        "PUT",
        f"/v1/admin/tenants/{_seg(tenant_id)}/scheduling",
        _model(TenantScheduling),
        body={"weight": weight, "taskLimits": limits},
        has_body=True,
    )


def _given(value: str | None) -> str | None:
    """An argument or variable, with blank meaning unset (as ``statefleet.config`` reads)."""
    value = value.strip() if value else None
    return value or None


def resolve_connection(
    base_url: str | None = None, api_key: str | None = None
) -> tuple[str, str | None]:
    """Where to connect and with which key, as the client and the CLI both decide it.

    The URL is ``base_url``, else ``$STATEFLEET_URL``, else the URL in the credentials
    file of ``statefleet up`` (``$STATEFLEET_HOME/credentials.json``), else
    ``http://127.0.0.1:8080``. The key is ``api_key``, else ``$STATEFLEET_API_KEY``,
    else the file's tenant key, but only when the URL is the server the file names.

    Raises:
        InvalidUrl: the URL lacks ``http://``/``https://`` or ends in ``/v1``.
    """
    saved = read_credentials()
    url, source = _given(base_url), "as given"
    if url is None and (url := _given(os.environ.get("STATEFLEET_URL"))):
        source = "from STATEFLEET_URL"
    if url is None and saved is not None and saved.url:
        url, source = saved.url, f"from {credentials_path()}"
    if url is None:
        url, source = DEFAULT_URL, "the default"
    key = _given(api_key) or _given(os.environ.get("STATEFLEET_API_KEY"))
    if key is None and saved is not None and saved.url and same_server(url, saved.url):
        key = saved.api_key
    _check_url(url, source)
    return url, key


def _check_url(url: str, source: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidUrl(
            0,
            "invalid_url",
            f"the server URL {url!r} ({source}) needs http:// or https:// and a host, "
            f"e.g. {DEFAULT_URL}",
        )
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        fixed = urlunsplit(parts._replace(path=path[: -len("/v1")], query="", fragment=""))
        raise InvalidUrl(
            0,
            "invalid_url",
            f"the server URL {url} ({source}) ends in /v1: drop /v1, the client adds "
            f"it to every path (use {fixed})",
        )


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"Accept": "application/json", "User-Agent": "statefleet-client"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


# --- executors --------------------------------------------------------------


def _sync(build: Callable[P, _Call[T]]) -> Callable[Concatenate[Client, P], T]:
    """Turns a call description into a blocking :class:`Client` method."""

    @functools.wraps(build)
    def method(self: Client, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return self._run(build(*args, **kwargs))

    return method


def _async(build: Callable[P, _Call[T]]) -> Callable[Concatenate[AsyncClient, P], Awaitable[T]]:
    """Turns a call description into an :class:`AsyncClient` coroutine method."""

    @functools.wraps(build)
    async def method(self: AsyncClient, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._run(build(*args, **kwargs))

    return method


class Client:
    """Blocking client; use as a context manager, or call :meth:`close`.

    ``Client()`` alone works against ``statefleet up`` on this machine, and with
    ``STATEFLEET_URL`` / ``STATEFLEET_API_KEY`` set, against any server (see
    :func:`resolve_connection`; explicit arguments win).

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8080`` (without ``/v1``).
        api_key: the tenant's key (``sf_<keyId>_<secret>``), or the admin key for the
            tenant and key methods.
        timeout: seconds per HTTP request (not for :meth:`wait`, which has its own).
        transport: an ``httpx.BaseTransport`` to use instead of the network (tests).

    Raises:
        InvalidUrl: the URL lacks ``http://`` or ends in ``/v1``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url, key = resolve_connection(base_url, api_key)
        self._timeout = timeout
        self._http = httpx.Client(
            base_url=self.base_url, headers=_headers(key), timeout=timeout, transport=transport
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Closes the connection pool."""
        self._http.close()

    def _run(self, call: _Call[T]) -> T:
        try:
            response = self._http.request(call.method, call.path, **call.request_kwargs())
        except httpx.TransportError as error:
            raise _transport_error(
                error, self.base_url, f"{call.method} {call.path}", self._timeout
            ) from error
        return _answer(call, response)

    deploy = _sync(_deploy)
    definition = _sync(_definition)
    definitions = _sync(_definitions)
    graph = _sync(_graph)
    start = _sync(_start)
    send = _sync(_send)
    get = _sync(_get)
    cancel = _sync(_cancel)
    tasks = _sync(_tasks)
    task = _sync(_task)
    complete_task = _sync(_complete_task)
    fail_task = _sync(_fail_task)
    retry_task = _sync(_retry_task)
    create_tenant = _sync(_create_tenant)
    create_key = _sync(_create_key)
    keys = _sync(_keys)
    revoke_key = _sync(_revoke_key)
    tenant_limits = _sync(_tenant_limits)
    set_tenant_limits = _sync(_set_tenant_limits)
    get_tenant_scheduling = _sync(_tenant_scheduling)
    set_tenant_scheduling = _sync(_set_tenant_scheduling)
    upgrade = _sync(_upgrade)
    get_upgrade = _sync(_get_upgrade)
    create_schedule = _sync(_create_schedule)
    get_schedule = _sync(_get_schedule)
    pause_schedule = _sync(_pause_schedule)
    resume_schedule = _sync(_resume_schedule)
    delete_schedule = _sync(_delete_schedule)

    def start_many(
        self,
        key: str,
        inputs: Iterable[Mapping[str, Any]],
        *,
        version: int | None = None,
        chunk_size: int = 5000,
        idempotency_key: str | None = None,
        priority: int | None = None,
    ) -> builtins.list[StartedBatch]:
        """Starts one instance per input, ``chunk_size`` inputs per ``POST /v1/batches``.

        Chunks keep each request under the server's body limit; every chunk is its own
        batch, so the result lists one :class:`StartedBatch` per chunk, in order. If a
        chunk fails, the batches already started keep running (the error is raised).
        With ``idempotency_key``, chunk ``i`` is sent with the key ``"<key>:<i>"``, so
        calling again with the same key and inputs (after a timeout, say) returns the
        same batches and starts nothing twice.
        """
        return [
            self._run(_start_batch(key, chunk, version, _chunk_key(idempotency_key, i), priority))
            for i, chunk in enumerate(_chunks(inputs, chunk_size))
        ]

    @overload
    def batch(self, batch_id: str, /) -> BatchProgress: ...

    @overload
    def batch(
        self,
        key: str,
        inputs: Iterable[Mapping[str, Any]],
        /,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
    ) -> StartedBatch: ...

    def batch(
        self,
        key_or_batch_id: str,
        inputs: Iterable[Mapping[str, Any]] | None = None,
        /,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
    ) -> BatchProgress | StartedBatch:
        """``batch(batch_id)``: a batch's progress. ``batch(key, inputs)``: starts them.

        Starting sends every input in one ``POST /v1/batches`` (one batch); with
        ``idempotency_key`` the same key returns the same batch instead of a second one.
        ``priority``: 0 to 10, higher first (the server's default for a batch: 5, below
        interactive work); ``start_many`` takes it too, for every chunk.
        """
        if inputs is None:
            return self._run(_batch(key_or_batch_id))
        call = _start_batch(
            key_or_batch_id, builtins.list(inputs), version, idempotency_key, priority
        )
        return self._run(call)

    def wait(self, instance_id: str, timeout: float = 60.0, poll_interval: float = 0.5) -> Instance:
        """Polls until the instance is done, failed or cancelled, and returns it.

        Raises:
            TimeoutError: it is still running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            instance = self.get(instance_id)
            delay = _poll_delay(instance_id, instance, deadline, poll_interval)
            if delay is None:
                return instance
            time.sleep(delay)

    def history(self, instance_id: str, *, page_size: int = 1000) -> Iterator[HistoryEntry]:
        """Every entry of the instance's audit log, oldest first, fetching page by page."""
        return self._pages(lambda after: _history_page(instance_id, after, page_size))

    def list(
        self,
        definition_key: str | None = None,
        status: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        page_size: int = 100,
    ) -> Iterator[Instance]:
        """The tenant's instances matching the filters, newest first, page by page.

        Pages are fetched as the iterator advances, so stopping early costs nothing.
        """
        return self._pages(
            lambda cursor: _instances_page(
                cursor, page_size, definition_key, status, created_after, created_before
            )
        )

    def list_tasks(
        self, status: str | None = None, task_type: str | None = None, page_size: int = 100
    ) -> Iterator[Task]:
        """The tenant's tasks across its instances, oldest first, page by page.

        ``list_tasks("pending", "HUMAN")`` is the inbox: what waits for a person.
        """
        return self._pages(lambda cursor: _tasks_page(cursor, page_size, status, task_type))

    def list_schedules(self, page_size: int = 100) -> Iterator[Schedule]:
        """The tenant's schedules, newest first, page by page."""
        return self._pages(lambda cursor: _schedules_page(cursor, page_size))

    def _pages(self, page: Callable[[str | None], _Call[_Page[T]]]) -> Iterator[T]:
        cursor: str | None = None
        while True:
            result = self._run(page(cursor))
            yield from result.items
            if not result.next_cursor:
                return
            cursor = result.next_cursor


class AsyncClient:
    """The :class:`Client` API with coroutines; use ``async with``, or ``await aclose()``.

    Connects where :class:`Client` does (:func:`resolve_connection`).

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8080`` (without ``/v1``).
        api_key: the tenant's key (``sf_<keyId>_<secret>``), or the admin key.
        timeout: seconds per HTTP request (not for :meth:`wait`, which has its own).
        transport: an ``httpx.AsyncBaseTransport``, e.g. ``httpx.ASGITransport(app)``.

    Raises:
        InvalidUrl: the URL lacks ``http://`` or ends in ``/v1``.
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.base_url, key = resolve_connection(base_url, api_key)
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=_headers(key), timeout=timeout, transport=transport
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Closes the connection pool."""
        await self._http.aclose()

    async def _run(self, call: _Call[T]) -> T:
        try:
            response = await self._http.request(call.method, call.path, **call.request_kwargs())
        except httpx.TransportError as error:
            raise _transport_error(
                error, self.base_url, f"{call.method} {call.path}", self._timeout
            ) from error
        return _answer(call, response)

    deploy = _async(_deploy)
    definition = _async(_definition)
    definitions = _async(_definitions)
    graph = _async(_graph)
    start = _async(_start)
    send = _async(_send)
    get = _async(_get)
    cancel = _async(_cancel)
    tasks = _async(_tasks)
    task = _async(_task)
    complete_task = _async(_complete_task)
    fail_task = _async(_fail_task)
    retry_task = _async(_retry_task)
    create_tenant = _async(_create_tenant)
    create_key = _async(_create_key)
    keys = _async(_keys)
    revoke_key = _async(_revoke_key)
    tenant_limits = _async(_tenant_limits)
    set_tenant_limits = _async(_set_tenant_limits)
    get_tenant_scheduling = _async(_tenant_scheduling)
    set_tenant_scheduling = _async(_set_tenant_scheduling)
    upgrade = _async(_upgrade)
    get_upgrade = _async(_get_upgrade)
    create_schedule = _async(_create_schedule)
    get_schedule = _async(_get_schedule)
    pause_schedule = _async(_pause_schedule)
    resume_schedule = _async(_resume_schedule)
    delete_schedule = _async(_delete_schedule)

    async def start_many(
        self,
        key: str,
        inputs: Iterable[Mapping[str, Any]],
        *,
        version: int | None = None,
        chunk_size: int = 5000,
        idempotency_key: str | None = None,
        priority: int | None = None,
    ) -> builtins.list[StartedBatch]:
        """See :meth:`Client.start_many`; chunks are sent one after the other."""
        return [
            await self._run(
                _start_batch(key, chunk, version, _chunk_key(idempotency_key, i), priority)
            )
            for i, chunk in enumerate(_chunks(inputs, chunk_size))
        ]

    @overload
    async def batch(self, batch_id: str, /) -> BatchProgress: ...

    @overload
    async def batch(
        self,
        key: str,
        inputs: Iterable[Mapping[str, Any]],
        /,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
    ) -> StartedBatch: ...

    async def batch(
        self,
        key_or_batch_id: str,
        inputs: Iterable[Mapping[str, Any]] | None = None,
        /,
        *,
        version: int | None = None,
        idempotency_key: str | None = None,
        priority: int | None = None,
    ) -> BatchProgress | StartedBatch:
        """See :meth:`Client.batch`."""
        if inputs is None:
            return await self._run(_batch(key_or_batch_id))
        call = _start_batch(
            key_or_batch_id, builtins.list(inputs), version, idempotency_key, priority
        )
        return await self._run(call)

    async def wait(
        self, instance_id: str, timeout: float = 60.0, poll_interval: float = 0.5
    ) -> Instance:
        """See :meth:`Client.wait`.

        Raises:
            TimeoutError: it is still running after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            instance = await self.get(instance_id)
            delay = _poll_delay(instance_id, instance, deadline, poll_interval)
            if delay is None:
                return instance
            await asyncio.sleep(delay)

    def history(self, instance_id: str, *, page_size: int = 1000) -> AsyncIterator[HistoryEntry]:
        """See :meth:`Client.history`; iterate with ``async for``."""
        return self._pages(lambda after: _history_page(instance_id, after, page_size))

    def list(
        self,
        definition_key: str | None = None,
        status: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Instance]:
        """See :meth:`Client.list`; iterate with ``async for``."""
        return self._pages(
            lambda cursor: _instances_page(
                cursor, page_size, definition_key, status, created_after, created_before
            )
        )

    def list_tasks(
        self, status: str | None = None, task_type: str | None = None, page_size: int = 100
    ) -> AsyncIterator[Task]:
        """See :meth:`Client.list_tasks`; iterate with ``async for``."""
        return self._pages(lambda cursor: _tasks_page(cursor, page_size, status, task_type))

    def list_schedules(self, page_size: int = 100) -> AsyncIterator[Schedule]:
        """See :meth:`Client.list_schedules`; iterate with ``async for``."""
        return self._pages(lambda cursor: _schedules_page(cursor, page_size))

    async def _pages(self, page: Callable[[str | None], _Call[_Page[T]]]) -> AsyncIterator[T]:
        cursor: str | None = None
        while True:
            result = await self._run(page(cursor))
            for item in result.items:
                yield item
            if not result.next_cursor:
                return
            cursor = result.next_cursor
