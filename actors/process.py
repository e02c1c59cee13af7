"""What an actor's process is set up with before it serves, in one object.

A Ray actor's process is started by whatever Ray node hosts it, so nothing of the
creating process's setup reaches it by itself: logging, tracing and the garbage
collector's threshold come along in the constructor (never from the Ray node's
environment) and every actor applies them the same way.
"""

from __future__ import annotations

from statefleet.engine.logging_setup import LogSettings, configure_logging
from statefleet.engine.record import record
from statefleet.engine.runtime.gc_tuning import tune_gc
from statefleet.engine.tracing import TraceSettings, configure_tracing

__all__ = ["ActorProcess"]


@record
class ActorProcess:
    log: LogSettings | None = None
    trace: TraceSettings | None = None
    #: ``STATEFLEET_GC_GEN0_THRESHOLD`` of the creating process; None leaves Python's.
    gc_gen0_threshold: int | None = None

    def apply(self) -> None:
        """The process logs, traces and collects like the one that created the actor."""
        configure_logging(self.log)
        configure_tracing(self.trace)
        if self.gc_gen0_threshold is not None:
            tune_gc(self.gc_gen0_threshold)
