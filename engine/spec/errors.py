"""Spec errors that name the JSON path of the problem."""

from __future__ import annotations

from statefleet.engine.record import record

__all__ = ["SpecError", "SpecValidationError"]


@record
class SpecError:
    """One problem in a spec.

    ``path`` is dotted keys with list indexes in brackets, relative to the spec
    root (``states.review.on.APPROVE[1].guard``); ``""`` means the root itself.
    """

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(root)'}: {self.message}"


class SpecValidationError(ValueError):
    """A spec failed validation; ``errors`` lists every problem found, in path order."""

    def __init__(self, errors: list[SpecError] | tuple[SpecError, ...]) -> None:
        self.errors = tuple(errors)
        lines = "\n".join(f"  - {error}" for error in self.errors)
        super().__init__(f"invalid workflow spec ({len(self.errors)} error(s)):\n{lines}")
