"""Request and response bodies of the v1 API, camelCase on the wire (docs/api.md, "Shapes").

Request models forbid unknown fields, so a snake_case or misspelt key is a 400
naming it rather than a silently ignored value.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from pydantic.alias_generators import to_camel

from statefleet.engine.runtime import Definition, InstanceView
from statefleet.engine.runtime.priority import (
    BATCH_PRIORITY,
    INTERACTIVE,
    MAX_PRIORITY,
    MIN_PRIORITY,
)
from statefleet.engine.runtime.service import BatchProgress
from statefleet.engine.runtime.tenant_scheduling import TaskLimit, TenantScheduling
from statefleet.engine.spec.identifiers import (
    DEFINITION_ID,
    EVENT_ID,
    EVENT_TYPE,
    IDEMPOTENCY_KEY,
    IdentifierRule,
)

__all__ = [
    "BatchCounts",
    "BatchCreated",
    "BatchIn",
    "BatchOut",
    "CompleteTaskIn",
    "DeadLetter",
    "DeadLetterList",
    "DefinitionIn",
    "DefinitionList",
    "DefinitionOut",
    "EventAccepted",
    "EventIn",
    "FailTaskIn",
    "HealthOut",
    "HistoryEntry",
    "HistoryPage",
    "InstanceList",
    "InstanceOut",
    "KeyCreated",
    "KeyInfo",
    "KeyList",
    "SpecLimitsIn",
    "SpecLimitsOut",
    "StartIn",
    "TaskLimitIn",
    "TaskLimitOut",
    "TaskList",
    "TaskOut",
    "TaskPage",
    "TenantCreated",
    "TenantIn",
    "TenantLimitsOut",
    "TenantSchedulingIn",
    "TenantSchedulingOut",
]

Status = Literal["running", "done", "failed", "cancelled"]


def _identifier(rule: IdentifierRule) -> StringConstraints:
    """The rule deploy applies (``engine.spec.identifiers``), as a pydantic constraint."""
    return StringConstraints(pattern=rule.pattern, max_length=rule.max_length)


#: Field types of identifiers: what deploy accepts, no more and no less (docs/spec.md).
DefinitionKey = Annotated[str, _identifier(DEFINITION_ID)]
EventType = Annotated[str, _identifier(EVENT_TYPE)]
EventId = Annotated[str, _identifier(EVENT_ID)]
IdempotencyKey = Annotated[str, _identifier(IDEMPOTENCY_KEY)]
#: A task type, as ``createTask`` names it (any non-empty string).
TaskType = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class Body(Wire):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=False, extra="forbid")


# -- requests -------------------------------------------------------------------------


class DefinitionIn(Body):
    spec: dict[str, Any]
    key: DefinitionKey | None = None


def _integral(value: Any) -> Any:
    """JSON Schema's ``integer`` includes ``154.0``: take it as 154 (strings, booleans and
    fractions stay refused by ``strict``), so the document and the route agree."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


#: 0..10, higher first (docs/scheduling.md): 10 is interactive, a batch defaults to 5.
Priority = Annotated[
    int, Field(strict=True, ge=MIN_PRIORITY, le=MAX_PRIORITY), BeforeValidator(_integral)
]


class StartIn(Body):
    definition_key: DefinitionKey
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    input: dict[str, Any] | None = None
    idempotency_key: IdempotencyKey | None = None
    priority: Priority = INTERACTIVE


class EventIn(Body):
    type: EventType
    payload: dict[str, Any] | None = None
    id: EventId | None = None


class BatchIn(Body):
    definition_key: DefinitionKey
    version: int | None = Field(default=None, ge=1, le=2**31 - 1)
    inputs: list[dict[str, Any]] = Field(min_length=1, max_length=100_000)
    priority: Priority = BATCH_PRIORITY


class CompleteTaskIn(Body):
    output: Any = None


class FailTaskIn(Body):
    error: str = Field(min_length=1, max_length=10_000)


class TenantIn(Body):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")


#: A spec limit: a positive integer (never a string, a float or a bool).
Limit = Annotated[int, Field(strict=True, ge=1, le=2**31 - 1), BeforeValidator(_integral)]


class SpecLimitsIn(Body):
    """A tenant's overrides of the spec limits; a field left out takes the default.

    PUT replaces the tenant's overrides as a whole: ``{}`` returns it to the defaults.
    """

    max_states: Limit | None = None
    max_regions: Limit | None = None
    max_depth: Limit | None = None
    max_transitions: Limit | None = None
    max_expression_length: Limit | None = None
    max_spec_bytes: Limit | None = None


def _one_or_both(schema: dict[str, Any]) -> None:
    """The document says what the route takes: numbers (never null), at least one."""
    for prop in schema["properties"].values():
        prop.update(next(s for s in prop.pop("anyOf") if s.get("type") != "null"))
    schema["anyOf"] = [{"required": ["concurrency"]}, {"required": ["perSecond"]}]


class TaskLimitIn(TaskLimit):
    """The engine's :class:`TaskLimit` (its bounds and its "one of the two" rule), read
    as strictly as every other body: no strings, no booleans, no nulls, camelCase only."""

    model_config = ConfigDict(strict=True, populate_by_name=False, json_schema_extra=_one_or_both)

    @field_validator("concurrency", "per_second", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("a number, not null (leave the field out for no limit)")
        return _integral(value)


class TenantSchedulingIn(TenantScheduling):
    """A tenant's scheduling settings, as PUT replaces them (a field left out takes its
    default: weight 1, no task limits). The engine's model, read strictly."""

    model_config = ConfigDict(strict=True, populate_by_name=False)

    task_limits: dict[TaskType, TaskLimitIn] = Field(  # type: ignore[assignment]
        default_factory=dict, alias="taskLimits", max_length=1000
    )

    @field_validator("weight", mode="before")
    @classmethod
    def _whole(cls, value: Any) -> Any:
        return _integral(value)


# -- responses ------------------------------------------------------------------------


class DefinitionOut(Wire):
    id: uuid.UUID
    key: str
    version: int
    checksum: str
    created_at: datetime
    spec: dict[str, Any] | None = None

    @classmethod
    def of(cls, d: Definition, *, with_spec: bool = True) -> DefinitionOut:
        return cls(
            id=d.id,
            key=d.key,
            version=d.version,
            checksum=d.checksum,
            created_at=d.created_at,
            spec=d.spec if with_spec else None,
        )


class DefinitionList(Wire):
    items: list[DefinitionOut]


class InstanceOut(Wire):
    id: uuid.UUID
    tenant_id: str
    definition_key: str
    definition_version: int
    status: str
    value: Any = None
    context: Any = None
    output: Any = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime
    batch_id: uuid.UUID | None = None
    priority: int

    @classmethod
    def of(cls, v: InstanceView) -> InstanceOut:
        return cls(
            id=v.id,
            tenant_id=v.tenant_id,
            definition_key=v.definition_key,
            definition_version=v.definition_version,
            status=v.status,
            value=v.value,
            context=v.context,
            output=v.output,
            error=v.error,
            created_at=v.created_at,
            updated_at=v.updated_at,
            batch_id=v.batch_id,
            priority=v.priority,
        )


class InstanceList(Wire):
    items: list[InstanceOut]
    next_cursor: str | None


class EventAccepted(Wire):
    event_id: str


class HistoryEntry(Wire):
    seq: int
    event_id: str
    type: str
    payload: Any = None
    state_before: Any = None
    state_after: Any = None
    effects: Any = None
    handled: bool
    error: str | None = None
    created_at: datetime


class HistoryPage(Wire):
    items: list[HistoryEntry]
    next_cursor: str | None


class TaskOut(Wire):
    id: uuid.UUID
    instance_id: uuid.UUID
    kind: str
    type: str
    name: str
    input: Any = None
    output: Any = None
    status: str
    run_at: datetime
    attempts: int
    max_attempts: int
    last_error: str | None = None
    idempotency_key: str | None = None
    completion_event: str | None = None
    failure_event: str | None = None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: dict[str, Any]) -> TaskOut:
        return cls.model_validate({k: row[k] for k in cls.model_fields})


class TaskList(Wire):
    items: list[TaskOut]


class TaskPage(Wire):
    items: list[TaskOut]
    next_cursor: str | None


class BatchCreated(Wire):
    batch_id: uuid.UUID
    count: int


class BatchCounts(Wire):
    running: int
    done: int
    failed: int
    cancelled: int


class BatchOut(Wire):
    batch_id: uuid.UUID
    total: int
    counts: BatchCounts
    priority: int

    @classmethod
    def of(cls, p: BatchProgress) -> BatchOut:
        return cls(
            batch_id=p.batch_id,
            total=p.total,
            counts=BatchCounts(**p.counts),
            priority=p.priority,
        )


class HealthOut(Wire):
    status: str


class TenantCreated(Wire):
    tenant_id: str
    api_key: str


class SpecLimitsOut(Wire):
    """The spec limits that apply to a tenant's deploys (docs/spec.md, "Limits")."""

    max_states: int
    max_regions: int
    max_depth: int
    max_transitions: int
    max_expression_length: int
    max_spec_bytes: int


class TenantLimitsOut(Wire):
    """``limits``: what applies; ``overrides``: what was set for this tenant (wire names)."""

    tenant_id: str
    limits: SpecLimitsOut
    overrides: dict[str, int]


class TaskLimitOut(Wire):
    """A limit as stored: a field left out is no limit of that kind."""

    concurrency: int | None = None
    per_second: float | None = None


class TenantSchedulingOut(Wire):
    """``weight``: the tenant's share against other tenants with waiting work;
    ``taskLimits``: per task type, across the cluster (docs/scheduling.md)."""

    weight: int
    task_limits: dict[str, TaskLimitOut]

    @classmethod
    def of(cls, scheduling: TenantScheduling) -> TenantSchedulingOut:
        return cls.model_validate(scheduling.as_json())


class KeyCreated(Wire):
    key_id: str
    api_key: str


class KeyInfo(Wire):
    key_id: str
    created_at: datetime
    revoked_at: datetime | None


class KeyList(Wire):
    items: list[KeyInfo]


class DeadLetter(Wire):
    """A queue job that could never succeed; ``body`` is its raw body as UTF-8 text."""

    id: uuid.UUID
    tenant_id: str | None
    queue: str
    reason: str
    body: str
    created_at: datetime


class DeadLetterList(Wire):
    items: list[DeadLetter]
