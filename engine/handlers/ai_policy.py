"""The AI task's guardrails, as pure functions: parse a policy, parse a decision, judge it.

The model proposes; the engine disposes. Nothing here trusts the prompt or the
model: a decision is emitted into the instance only when the task's ``policy``
allows it, and every decision, emitted or not, is written into the task's output
so that the audit log shows what the model said and why the engine did or did
not act on it. No I/O, no clock: the handler in ``ai.py`` measures and calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
)

from statefleet.engine.record import record

__all__ = [
    "DECISION_JSON_SCHEMA",
    "MAX_RAW_CHARS",
    "AiPolicy",
    "Decision",
    "InvalidPolicy",
    "MalformedAnswer",
    "Usage",
    "Verdict",
    "audit_output",
    "judge",
    "parse_decision",
    "parse_policy",
]

#: How much of a malformed answer is kept in the error (and so in ``tasks.last_error``).
MAX_RAW_CHARS = 4096

#: The answer's shape, sent to providers that constrain their output to a schema.
#: ``payload`` stays a free-form object, which is why OpenAI's ``strict`` mode is off.
DECISION_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"type": "string", "description": "the event to send to the workflow"},
        "payload": {"type": "object", "description": "data for that event"},
        "reason": {"type": "string", "description": "why, in one or two sentences"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
    },
    "required": ["event", "payload", "reason", "confidence"],
    "additionalProperties": False,
}


class InvalidPolicy(ValueError):
    """The task's ``policy`` is not a valid AI policy; retrying cannot fix a spec."""


class MalformedAnswer(Exception):
    """The model's answer is not a valid decision.

    Retryable on purpose: models are not deterministic, and the next attempt may
    answer well. The message carries the raw answer (truncated to
    ``MAX_RAW_CHARS``) so the task's last error shows what the model said.
    """

    def __init__(self, problem: str, raw: str) -> None:
        self.problem = problem
        self.raw = raw
        shown = raw if len(raw) <= MAX_RAW_CHARS else raw[:MAX_RAW_CHARS] + " ...[truncated]"
        super().__init__(f"malformed model answer ({problem}); raw answer: {shown}")


class AiPolicy(BaseModel):
    """A task's ``policy`` object. Unknown keys are refused: a misspelt
    ``minConfidance`` must not silently drop a guardrail."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    allowed_events: tuple[StrictStr, ...] = Field(default=(), alias="allowedEvents")
    allow_direct_emit: StrictBool = Field(default=False, alias="allowDirectEmit")
    min_confidence: StrictFloat | None = Field(default=None, ge=0, le=1, alias="minConfidence")
    max_tokens: StrictInt | None = Field(default=None, gt=0, alias="maxTokens")
    timeout_ms: StrictInt | None = Field(default=None, gt=0, alias="timeout")
    require_human_approval: StrictBool = Field(default=False, alias="requireHumanApproval")


def parse_policy(raw: Mapping[str, Any] | None) -> AiPolicy:
    """The task's policy; none at all is the strictest one (nothing is ever emitted)."""
    try:
        return AiPolicy.model_validate(dict(raw or {}))
    except ValidationError as error:
        raise InvalidPolicy(f"invalid AI policy: {_summary(error)}") from None


class Decision(BaseModel):
    """What the model proposes. Extra keys a model adds are dropped, not refused."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event: StrictStr = Field(min_length=1)
    payload: dict[str, Any] = Field(default_factory=dict)
    reason: StrictStr
    confidence: StrictFloat = Field(ge=0, le=1)


_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n(?P<body>.*)\n```$", re.DOTALL)


def parse_decision(raw: str) -> Decision:
    """The decision in a model's answer, or ``MalformedAnswer`` naming the problem.

    One leniency: an answer that is a single Markdown code fence (as small local
    models sometimes write even in JSON mode) is read as its contents.
    """
    text = raw.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group("body").strip()
    try:
        data = json.loads(text)
    except ValueError as error:
        raise MalformedAnswer(f"not JSON: {error}", raw) from None
    if not isinstance(data, dict):
        raise MalformedAnswer(f"a JSON {type(data).__name__}, not an object", raw)
    try:
        return Decision.model_validate(data)
    except ValidationError as error:
        raise MalformedAnswer(_summary(error), raw) from None


@record
class Verdict:
    """The engine's ruling on one decision.

    ``rejected`` means the policy refuses the decision itself (an event outside
    ``allowedEvents``, a confidence below ``minConfidence``). A decision that is
    acceptable but may not be emitted by the worker (``allowDirectEmit`` false,
    ``requireHumanApproval``) is held: not emitted, not rejected. ``reasons``
    lists every reason it was not emitted, refusals first.
    """

    emit: bool
    rejected: bool
    reasons: tuple[str, ...] = ()

    @property
    def reason(self) -> str | None:
        return "; ".join(self.reasons) or None


def judge(decision: Decision, policy: AiPolicy) -> Verdict:
    """Emit only when every guardrail agrees; otherwise say, in order, each reason why not."""
    refusals: list[str] = []
    holds: list[str] = []
    if decision.event not in policy.allowed_events:
        allowed = ", ".join(policy.allowed_events) or "none"
        refusals.append(f"event {decision.event!r} is not in allowedEvents (allowed: {allowed})")
    if policy.min_confidence is not None and decision.confidence < policy.min_confidence:
        refusals.append(
            f"confidence {decision.confidence:g} is below minConfidence {policy.min_confidence:g}"
        )
    if policy.require_human_approval:
        holds.append("requireHumanApproval: a person must approve the decision")
    if not policy.allow_direct_emit:
        holds.append("allowDirectEmit is false: the worker may not emit the event")
    reasons = (*refusals, *holds)
    return Verdict(emit=not reasons, rejected=bool(refusals), reasons=reasons)


@record
class Usage:
    """Token counts as the provider reported them (None when it reported none)."""

    input_tokens: int | None = None
    output_tokens: int | None = None


def audit_output(
    decision: Decision,
    verdict: Verdict,
    *,
    provider: str,
    model: str,
    usage: Usage,
    latency_ms: int,
    finish_reason: str | None,
) -> dict[str, Any]:
    """The task's output, hence its completion event's payload: the audit record of one call."""
    return {
        "decision": decision.model_dump(mode="json"),
        "emitted": verdict.emit,
        "rejected": verdict.rejected,
        "rejectionReason": verdict.reason,
        "provider": provider,
        "model": model,
        "usage": {"inputTokens": usage.input_tokens, "outputTokens": usage.output_tokens},
        "latencyMs": latency_ms,
        "finishReason": finish_reason,
    }


def _summary(error: ValidationError) -> str:
    """A pydantic error as one line: ``field: message`` per problem, without the input echo."""
    parts = []
    for item in error.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in item["loc"]) or "(root)"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)
