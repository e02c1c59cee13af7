"""Pydantic models of the workflow spec (contract v1), normalised on load.

The models accept every shorthand the contract allows (a transition as a bare
target string, ``cond`` for ``guard``, one action instead of a list, a guard as
a bare name) and store one canonical shape, so the interpreter's compiler never
looks at shorthands. They check structure only; cross-references (targets,
guard and action names, CEL) are checked by :mod:`statefleet.engine.spec.validate`.

Every model is frozen and forbids unknown keys: a spec that uses something
outside the contract is rejected, not silently ignored. Scalars that pydantic
would coerce (``"yes"`` or ``1`` for a boolean, ``true`` or ``"3"`` for an
integer) are declared strict for the same reason.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    Tag,
    field_validator,
    model_validator,
)

__all__ = [
    "Action",
    "AssignAction",
    "BackoffSpec",
    "CancelTaskAction",
    "CreateTaskAction",
    "Guard",
    "GuardExpr",
    "GuardLogic",
    "GuardNot",
    "GuardRef",
    "NamedActionRef",
    "NamedGuard",
    "RaiseAction",
    "RaisedEvent",
    "RetrySpec",
    "StateNodeSpec",
    "TaskLimitsSpec",
    "TaskSpec",
    "Transition",
    "WorkflowSpec",
]

BUILTIN_ACTIONS = frozenset({"assign", "createTask", "raise", "cancelTask"})
LOGIC_GUARDS = frozenset({"and", "or", "not"})


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)


# --- guards -----------------------------------------------------------------


class GuardRef(_Model):
    """A reference to a named guard under the root ``guards``."""

    type: str
    params: dict[str, Any] | None = None


class GuardExpr(_Model):
    """An inline CEL guard."""

    expr: str


class GuardLogic(_Model):
    type: Literal["and", "or"]
    guards: tuple[Guard, ...]


class GuardNot(_Model):
    type: Literal["not"]
    guard: Guard


def _guard_kind(raw: Any) -> str:
    if isinstance(raw, str):
        return "ref"
    if isinstance(raw, dict):
        if "expr" in raw:
            return "expr"
        kind = raw.get("type")
        if kind in ("and", "or"):
            return "logic"
        if kind == "not":
            return "not"
        return "ref"
    if isinstance(raw, GuardExpr):
        return "expr"
    if isinstance(raw, GuardLogic):
        return "logic"
    if isinstance(raw, GuardNot):
        return "not"
    return "ref"


def _guard_ref(raw: Any) -> Any:
    return {"type": raw} if isinstance(raw, str) else raw


Guard = Annotated[
    Annotated[GuardRef, BeforeValidator(_guard_ref), Tag("ref")]
    | Annotated[GuardExpr, Tag("expr")]
    | Annotated[GuardLogic, Tag("logic")]
    | Annotated[GuardNot, Tag("not")],
    Discriminator(_guard_kind),
]


class NamedGuard(_Model):
    """A root-level guard definition: CEL over ``context``, ``event``, ``params``."""

    expr: str
    description: str | None = None


# --- actions ----------------------------------------------------------------


class AssignAction(_Model):
    """``{"type": "assign", "path", "value"}`` or ``{"type": "assign", "assignments"}``."""

    type: Literal["assign"]
    path: str | None = None
    value: Any = None
    assignments: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> AssignAction:
        has_path = self.path is not None
        has_assignments = self.assignments is not None
        if has_path == has_assignments:
            raise ValueError("assign takes either `path` and `value`, or `assignments`")
        if has_path and "value" not in self.model_fields_set:
            raise ValueError("assign with `path` needs a `value`")
        if has_assignments and "value" in self.model_fields_set:
            raise ValueError("assign with `assignments` takes no `value`")
        return self


class BackoffSpec(_Model):
    """Retry backoff: ``delay`` (ms or ISO-8601), doubled per attempt when exponential."""

    type: Literal["exponential", "fixed"] = "exponential"
    delay: StrictInt | str = 1000


class RetrySpec(_Model):
    max_attempts: StrictInt = Field(default=3, ge=1, alias="maxAttempts")
    backoff: BackoffSpec | None = None


class TaskLimitsSpec(_Model):
    """``task.limits``: how many attempts of this task may run at once, how many start a second.

    The limits are cluster-wide and enforced by the engine's admitter; work over
    them waits, it is never dropped. ``key`` is a CEL expression over ``input``
    (and ``context``, ``event``, ``params``) that splits the limit per value
    (one AI call at a time per customer); without it the task type is the key.
    Its CEL is checked by :mod:`statefleet.engine.spec.validate`.
    """

    concurrency: StrictInt | None = Field(default=None, ge=1)
    per_second: StrictFloat | None = Field(
        default=None, gt=0, allow_inf_nan=False, alias="perSecond"
    )
    key: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _some_limit(self) -> TaskLimitsSpec:
        if self.concurrency is None and self.per_second is None:
            raise ValueError("`limits` needs `concurrency`, `perSecond` or both")
        return self


class TaskSpec(_Model):
    """The ``task`` of a ``createTask`` action; value fields may hold ``$expr``."""

    type: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: Any = Field(default_factory=dict)
    run_at: Any = Field(default=None, alias="runAt")
    delay: Any = None
    idempotency_key: Any = Field(default=None, alias="idempotencyKey")
    completion_event: str | None = Field(default=None, alias="completionEvent")
    failure_event: str | None = Field(default=None, alias="failureEvent")
    retry: RetrySpec | None = None
    timeout: StrictInt | str | None = None
    policy: dict[str, Any] | None = None
    limits: TaskLimitsSpec | None = None


class CreateTaskAction(_Model):
    type: Literal["createTask"]
    task: TaskSpec


class RaisedEvent(_Model):
    type: str = Field(min_length=1)
    payload: Any = Field(default_factory=dict)


class RaiseAction(_Model):
    type: Literal["raise"]
    event: RaisedEvent


class CancelTaskAction(_Model):
    type: Literal["cancelTask"]
    idempotency_key: Any = Field(default=None, alias="idempotencyKey")
    name: str | None = None

    @model_validator(mode="after")
    def _one_key(self) -> CancelTaskAction:
        if (self.idempotency_key is None) == (self.name is None):
            raise ValueError("cancelTask takes exactly one of `idempotencyKey` or `name`")
        return self


class NamedActionRef(_Model):
    """``{"type": name, "params": {...}}``: an action defined under the root ``actions``."""

    type: str
    params: dict[str, Any] | None = None


def _action_kind(raw: Any) -> str:
    kind = raw if isinstance(raw, str) else getattr(raw, "type", None)
    if isinstance(raw, dict):
        kind = raw.get("type")
    return kind if kind in BUILTIN_ACTIONS else "named"


def _action_ref(raw: Any) -> Any:
    return {"type": raw} if isinstance(raw, str) else raw


Action = Annotated[
    Annotated[AssignAction, Tag("assign")]
    | Annotated[CreateTaskAction, Tag("createTask")]
    | Annotated[RaiseAction, Tag("raise")]
    | Annotated[CancelTaskAction, Tag("cancelTask")]
    | Annotated[NamedActionRef, BeforeValidator(_action_ref), Tag("named")],
    Discriminator(_action_kind),
]


def _as_list(raw: Any) -> Any:
    if raw is None:
        return []
    return raw if isinstance(raw, list | tuple) else [raw]


# --- transitions and state nodes --------------------------------------------


class Transition(_Model):
    """One candidate transition; ``target`` is empty for a targetless transition."""

    target: tuple[str, ...] = ()
    guard: Guard | None = None
    actions: tuple[Action, ...] = ()
    reenter: StrictBool = False
    description: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, raw: Any) -> Any:
        # XState's normalizeTarget reads an empty target string as "no target".
        if isinstance(raw, str):
            return {"target": (raw,)} if raw else {}
        if isinstance(raw, dict):
            raw = dict(raw)
            if "cond" in raw:
                if "guard" in raw:
                    raise ValueError("give `guard` or its alias `cond`, not both")
                raw["guard"] = raw.pop("cond")
            if isinstance(raw.get("target"), str) and raw["target"]:
                raw["target"] = (raw["target"],)
            elif raw.get("target") in (None, ""):
                raw.pop("target", None)
            if isinstance(raw.get("guard"), str):
                raw["guard"] = {"type": raw["guard"]}
            if "actions" in raw:
                raw["actions"] = [_action_ref(a) for a in _as_list(raw["actions"])]
        return raw


def _transitions(raw: Any) -> Any:
    return _as_list(raw)


class StateNodeSpec(_Model):
    """A state node; ``type`` is inferred (``states`` present -> compound) when absent."""

    type: Literal["atomic", "compound", "parallel", "final"] | None = None
    initial: str | None = None
    states: dict[str, StateNodeSpec] | None = None
    id: str | None = None
    on: dict[str, tuple[Transition, ...]] = Field(default_factory=dict)
    always: tuple[Transition, ...] = ()
    after: dict[str, tuple[Transition, ...]] = Field(default_factory=dict)
    entry: tuple[Action, ...] = ()
    exit: tuple[Action, ...] = ()
    on_done: tuple[Transition, ...] = Field(default=(), alias="onDone")
    output: Any = None
    tags: tuple[str, ...] = ()
    description: str | None = None
    meta: Any = None

    @model_validator(mode="before")
    @classmethod
    def _shorthands(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        if raw.get("type") == "history":
            raise ValueError("history states are not supported in spec v1")
        for key in ("on", "after"):
            if isinstance(raw.get(key), dict):
                raw[key] = {k: _transitions(v) for k, v in raw[key].items()}
        for key in ("always", "onDone"):
            if key in raw:
                raw[key] = _transitions(raw[key])
        for key in ("entry", "exit"):
            if key in raw:
                raw[key] = [_action_ref(a) for a in _as_list(raw[key])]
        if isinstance(raw.get("tags"), str):
            raw["tags"] = [raw["tags"]]
        return raw

    @field_validator("initial")
    @classmethod
    def _initial_not_empty(cls, value: str | None) -> str | None:
        if value is not None and not value:
            raise ValueError("`initial` must name a child state")
        return value

    @property
    def has_output(self) -> bool:
        return "output" in self.model_fields_set

    @property
    def kind(self) -> str:
        """The node's type, inferred as XState infers it."""
        if self.type is not None:
            return self.type
        return "compound" if self.states else "atomic"


class WorkflowSpec(StateNodeSpec):
    """The root of a spec: a state node plus the machine-wide sections."""

    id: str = Field(min_length=1)
    type: Literal["compound", "parallel"] | None = None
    context: dict[str, Any] = Field(default_factory=dict)
    guards: dict[str, NamedGuard] = Field(default_factory=dict)
    actions: dict[str, Action] = Field(default_factory=dict)

    @field_validator("guards", mode="before")
    @classmethod
    def _guard_shorthand(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            return {k: {"expr": v} if isinstance(v, str) else v for k, v in raw.items()}
        return raw

    @field_validator("actions", mode="before")
    @classmethod
    def _action_shorthand(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            return {k: _action_ref(v) for k, v in raw.items()}
        return raw


GuardLogic.model_rebuild()
GuardNot.model_rebuild()
StateNodeSpec.model_rebuild()
WorkflowSpec.model_rebuild()
