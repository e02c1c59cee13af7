"""The workflow spec: pydantic models of contract v1 and their validation.

``validate_spec`` is the one gate a spec passes at upload time; the interpreter's
compiler builds on its result and on :class:`StateIndex` for target resolution.
"""

from statefleet.engine.spec.durations import parse_delay_ms, parse_instant
from statefleet.engine.spec.errors import SpecError, SpecValidationError
from statefleet.engine.spec.models import StateNodeSpec, WorkflowSpec
from statefleet.engine.spec.targets import StateIndex, StatePath, resolve_target
from statefleet.engine.spec.validate import format_path, validate_spec

__all__ = [
    "SpecError",
    "SpecValidationError",
    "StateIndex",
    "StateNodeSpec",
    "StatePath",
    "WorkflowSpec",
    "format_path",
    "parse_delay_ms",
    "parse_instant",
    "resolve_target",
    "validate_spec",
]
