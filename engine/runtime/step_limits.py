"""The runtime's side of a step's budget: turns settings into a per-step CPU-time deadline.

The interpreter counts microsteps itself but reads no clock
(``engine/interpreter/budget.py``); the runtime owns the clock, so it starts each
step's deadline here and hands the interpreter a callable that says whether it has
passed. A step over either budget fails its instance with a message naming the
budget (status ``failed``, an audit row with that error) instead of holding its
shard, and every other instance on that shard, for longer.
"""

from __future__ import annotations

import time

from statefleet.engine.interpreter.budget import DEFAULT_MAX_MICROSTEPS, StepBudget
from statefleet.engine.record import record

__all__ = ["StepLimits"]


@record
class StepLimits:
    #: Microsteps one event may cause (``STATEFLEET_STEP_MAX_MICROSTEPS``).
    max_microsteps: int = DEFAULT_MAX_MICROSTEPS
    #: CPU time one step may take, in ms (``STATEFLEET_STEP_TIME_BUDGET_MS``).
    time_budget_ms: int = 1_000

    def budget(self, *, in_thread: bool = False) -> StepBudget:
        """A budget whose deadline starts now: call it right before the step.

        ``in_thread``: the step runs in a worker thread beside the event loop. Its
        check then also yields the GIL (``time.sleep(0)``), so the event loop, whose
        other instances wait on I/O, gets it back within a fraction of a millisecond
        instead of after CPython's 5 ms switch interval at every wake-up; it is asked
        every 64 work units instead of 256 for that reason.
        """
        # CPU time of the thread running the step, not wall time: a step that waited
        # for a core on a loaded machine (or for the GIL beside the event loop) has done
        # no more work, and failing its instance for the machine's load would be wrong.
        # The clock starts at the interpreter's second check, in the thread that runs
        # the step (a big machine's step runs in a worker thread, not the caller's).
        # Not at the first: nearly every step ends within the pass that makes its first
        # check, and reading a thread's CPU clock is a system call (about 0.6 us, twice
        # per hello instance) that such a step would make for nothing. The work before
        # the second check, at most one microstep or 256 work units, goes unmetered.
        budget_s = self.time_budget_ms / 1000
        deadline = -1.0  # -1: no check yet; 0: one check, no clock read yet

        def out_of_time() -> bool:
            nonlocal deadline
            if deadline > 0:
                return time.thread_time() > deadline
            deadline = 0.0 if deadline < 0 else time.thread_time() + budget_s
            return False

        def out_of_time_yielding() -> bool:
            time.sleep(0)
            return out_of_time()

        return StepBudget(
            max_microsteps=self.max_microsteps,
            out_of_time=out_of_time_yielding if in_thread else out_of_time,
            time_budget_ms=self.time_budget_ms,
            check_every=64 if in_thread else 256,
        )
