"""The observer port: what the runtime reports as it works, for metrics.

The runtime counts nothing itself; whoever hosts it (the API's embedded worker,
``statefleet up``) passes an observer that feeds its metrics registry. Calls
are synchronous and must be cheap: they run on the hot path.
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
