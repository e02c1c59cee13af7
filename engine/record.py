"""``@record``: the project's immutable value class, frozen where it is checked.

Every plain value the engine passes around (rows, jobs, steps, snapshots, outcomes) is
a record: a slotted dataclass with equality and a hash over its fields, which no code
may assign to after construction.

Why not ``@dataclass(frozen=True, slots=True)``: a frozen dataclass's ``__init__``
stores each field through ``object.__setattr__``, about four times the cost of a plain
slot store (CPython 3.11: 650 ns against 150 ns for six fields). The engine makes a
few dozen records per instance, and in the in-process hello burst their constructors
were about a tenth of the engine's Python time. So the rule is checked statically
instead: ``dataclass_transform(frozen_default=True)`` makes mypy (``--strict``, in CI
on the whole package) treat every ``@record`` class as frozen and reject any
assignment to its fields, while at run time the class is a mutable slotted dataclass
with the hash a frozen one would have (``unsafe_hash``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

__all__ = ["record"]

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[_T]) -> type[_T]:
    """Makes ``cls`` a record (see the module docstring)."""
    return dataclass(slots=True, unsafe_hash=True)(cls)
