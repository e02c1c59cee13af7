"""Placeholder: the compiled machine lands here (being written)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from statefleet.engine.interpreter.snapshot import Snapshot, Step


class Machine:
    """A validated, compiled spec. Immutable; share it across instances and threads."""

    def initial_state(self, input: Mapping[str, Any] | None = None) -> Step:
        raise NotImplementedError

    def transition(self, snapshot: Snapshot | Mapping[str, Any], event: Mapping[str, Any]) -> Step:
        raise NotImplementedError


def load_machine(spec: Any) -> Machine:
    """Validates ``spec`` (JSON data or a WorkflowSpec) and compiles it.

    Raises:
        SpecValidationError: listing every problem with its JSON path.
    """
    raise NotImplementedError
