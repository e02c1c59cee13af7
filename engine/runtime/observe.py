"""The observer port: what the runtime reports as it works, for metrics.

The runtime counts nothing itself; each shard and pool host passes a
:class:`~statefleet.engine.runtime.tally.Tally`, whose counts travel home with the
host's replies to the engine loop (see ``tally.py``). Calls are synchronous and must
be cheap: they run on the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from statefleet.engine.runtime.instances import ApplyOutcome

__all__ = ["Observer"]


class Observer(Protocol):
    def events_applied(self, outcomes: Sequence[ApplyOutcome], seconds: float) -> None:
        """One batch of events committed (or acknowledged) in ``seconds``."""
        ...

    def task_finished(self, task_type: str, outcome: str, seconds: float) -> None:
        """One task job handled: ``succeeded``, ``retrying``, ``failed``, ``timer_fired``, ..."""
        ...

    def ai_decided(self, outcome: str) -> None:
        """An ``AI`` task's decision: ``emitted``, ``rejected`` (by the policy) or ``withheld``."""
        ...
