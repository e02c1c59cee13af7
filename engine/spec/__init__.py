"""The workflow spec: pydantic models of contract v1 and their validation."""

from statefleet.engine.spec.models import WorkflowSpec

__all__ = ["WorkflowSpec"]
