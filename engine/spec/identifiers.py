"""Identifiers: one rule for each kind, used by spec validation and by every API route.

A definition id travels in URL paths (``/v1/definitions/{key}``), so it may not hold
``/``, ``%``, spaces or anything a proxy could rewrite; an event type a spec listens
for must be one a client can send; a key is compared byte for byte. Each rule is
written once here: :func:`validate_spec` applies it to the spec, and the API's request
models and path parameters use :attr:`IdentifierRule.pattern` (which is also what the
OpenAPI document declares), so a route accepts exactly what deploy accepts.
docs/spec.md ("Identifiers") lists the rules.
"""

from __future__ import annotations

import re
from dataclasses import field
from typing import Final

from statefleet.engine.record import record

__all__ = [
    "DEFINITION_ID",
    "EVENT_ID",
    "EVENT_TYPE",
    "IDEMPOTENCY_KEY",
    "TASK_NAME",
    "IdentifierRule",
]


@record
class IdentifierRule:
    """A kind of identifier: its regular expression and how to explain it.

    Attributes:
        what: the noun used in messages ("definition id").
        body: the expression without anchors; ``pattern`` anchors it.
        charset: the allowed characters, in words, for messages and docs.
        max_length: the longest allowed value (the expression enforces it too).
    """

    what: str
    body: str
    charset: str
    max_length: int
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_compiled", re.compile(self.body, re.ASCII))

    @property
    def pattern(self) -> str:
        """The anchored expression, for pydantic/OpenAPI ``pattern``."""
        return f"^{self.body}$"

    def matches(self, value: str) -> bool:
        return self._compiled.fullmatch(value) is not None

    def problem(self, value: object) -> str | None:
        """Why ``value`` is not a valid identifier of this kind, or None when it is."""
        if not isinstance(value, str):
            return None  # the structural checks name the wrong type
        if self.matches(value):
            return None
        shown = value if len(value) <= 40 else f"{value[:40]}..."
        return (
            f"invalid {self.what} {shown!r}: use 1 to {self.max_length} characters, {self.charset}"
        )


_NAME_CHARSET: Final = "letters, digits and . _ : - (the first a letter or a digit)"

#: Definition ids (a spec's root ``id``, the ``key`` it is deployed under).
DEFINITION_ID: Final = IdentifierRule(
    "definition id", r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", _NAME_CHARSET, 128
)
#: Task names (``createTask``'s ``task.name``, ``cancelTask``'s ``name``).
TASK_NAME: Final = IdentifierRule(
    "task name", r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}", _NAME_CHARSET, 128
)
#: Event types a spec listens for or sends, and that clients send. ``*`` is not a
#: character of a type: it only appears in a spec's wildcard descriptors (``*``,
#: ``order.*``).
EVENT_TYPE: Final = IdentifierRule(
    "event type",
    r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}",
    "letters, digits and . _ : - (the first a letter, a digit or _)",
    128,
)
#: Idempotency keys of starts and tasks, and client-chosen event ids.
IDEMPOTENCY_KEY: Final = IdentifierRule(
    "idempotency key",
    r"[\x21-\x7E]{1,200}",
    "visible ASCII characters (no spaces)",
    200,
)
#: Client-chosen event ids (``POST /v1/instances/{id}/events`` ``id``): the same rule.
EVENT_ID: Final = IdentifierRule(
    "event id", IDEMPOTENCY_KEY.body, IDEMPOTENCY_KEY.charset, IDEMPOTENCY_KEY.max_length
)
