"""The budget of one step: how much work one event may cause before it is cut off.

One tenant's event must not hold a shard (and every other instance on it) for
minutes, so a step has two limits:

* **microsteps**, counted by the interpreter itself: deterministic, the same on
  every replay, and the guard against eventless transitions or raised events
  that loop;
* **time** (the runtime measures the step thread's CPU time), which the
  interpreter cannot read (it is pure: no clock). The
  caller passes ``out_of_time``, a callable that answers whether the step's
  deadline has passed. The interpreter calls it at deterministic points, once
  per microstep and once every ``check_every`` work units (guards evaluated,
  actions run, states entered or exited, so one wide microstep is cut short
  too), so the pure path -- no callable, as in ``simulate``, the
  conformance and differential tests -- stays a deterministic function of its
  inputs, and only the runtime, which owns a clock, can cut a step short by time.

Counting work units and asking a caller-supplied callable was chosen over
passing a deadline and a clock function: the interpreter never sees a time
value, so nothing in it can depend on one.

A step over its budget raises :class:`BudgetExceeded`, an ``EvaluationError``:
the step fails as a whole (``status: "error"``, no effects) and its message says
which budget ran out.
"""

from __future__ import annotations

from collections.abc import Callable

from statefleet.engine.interpreter.values import EvaluationError
from statefleet.engine.record import record

__all__ = ["DEFAULT_MAX_MICROSTEPS", "NO_CLOCK", "BudgetExceeded", "Meter", "StepBudget"]

#: Microsteps one event may cause by default (XState's ``maxIterations`` in the tests).
DEFAULT_MAX_MICROSTEPS = 1000


class BudgetExceeded(EvaluationError):
    """A step used more than its budget; ``budget`` names which (``microsteps`` or ``time``)."""

    def __init__(self, budget: str, message: str) -> None:
        super().__init__(message)
        self.budget = budget


@record
class StepBudget:
    """Limits for one step (an external event or the start, with everything it causes)."""

    #: Microsteps at most (an eventless/raise loop is cut off here).
    max_microsteps: int = DEFAULT_MAX_MICROSTEPS
    #: Answers True once the step's time budget is spent; None: no time limit.
    out_of_time: Callable[[], bool] | None = None
    #: The time budget in ms, only to name it in the error message.
    time_budget_ms: int | None = None
    #: Work units between two calls of ``out_of_time``.
    check_every: int = 256


#: ``Meter.next_check`` when there is no clock: never reached.
NO_CLOCK = 1 << 62

#: The budget of a step when the caller gives none: microsteps only, no clock.
UNBOUNDED_TIME = StepBudget()


class Meter:
    """Counts one step's microsteps and work units against its :class:`StepBudget`.

    The interpreter's hot loops update ``units`` and ``microsteps`` in place and call
    :meth:`check_time` only when ``units`` reaches ``next_check`` (``NO_CLOCK`` without
    a clock: never), and once per microstep with a clock: a method call per state
    entered would cost a tenth of a small step.
    """

    __slots__ = ("budget", "max_microsteps", "microsteps", "next_check", "units")

    def __init__(self, budget: StepBudget | None = None) -> None:
        self.budget = budget = budget or UNBOUNDED_TIME
        self.max_microsteps = budget.max_microsteps
        self.microsteps = 0
        self.units = 0
        self.next_check = budget.check_every if budget.out_of_time is not None else NO_CLOCK

    def check_time(self) -> None:
        """Raises :class:`BudgetExceeded` if the caller's clock says the time is up."""
        out_of_time = self.budget.out_of_time
        if out_of_time is None:
            return
        self.next_check = self.units + self.budget.check_every
        if out_of_time():
            limit = self.budget.time_budget_ms
            what = f"{limit} ms" if limit is not None else "its time"
            raise BudgetExceeded(
                "time",
                f"step budget exceeded: CPU time over {what} (after {self.microsteps} "
                f"microsteps and {self.units} work units); the instance is failed so that "
                "it does not hold its shard",
            )

    def too_many_microsteps(self, where: str) -> BudgetExceeded:
        """The error for a step past ``max_microsteps``; ``where`` names the looping states."""
        return BudgetExceeded(
            "microsteps",
            f"step budget exceeded: more than {self.max_microsteps} microsteps for one "
            f"event: eventless transitions or raised events loop (last from state {where})",
        )
