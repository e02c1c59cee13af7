"""The shard actor: a thin Ray host for :class:`~statefleet.engine.runtime.hosts.ShardHost`.

Made a Ray actor by :mod:`statefleet.actors.factory` only. Everything it needs comes
in its constructor arguments (DSN, settings); it opens its own asyncpg pool on its
first call, inside the actor's event loop, and never touches a queue.
"""

from __future__ import annotations

import os
from typing import Any

from statefleet.engine.logging_setup import LogSettings, configure_logging
from statefleet.engine.runtime.gc_tuning import tune_gc
from statefleet.engine.runtime.hosts import ShardHost
from statefleet.engine.tracing import TraceSettings, configure_tracing

__all__ = ["ShardActor"]


class ShardActor(ShardHost):
    """A :class:`ShardHost` whose methods are the actor's remote API."""

    def __init__(
        self,
        *args: Any,
        log: LogSettings | None = None,
        trace: TraceSettings | None = None,
        gc_gen0_threshold: int | None = None,
    ) -> None:
        # The actor's process logs and traces like the one that created it (its
        # settings came along in the constructor, never from the Ray node's environment).
        configure_logging(log)
        configure_tracing(trace)
        super().__init__(*args)
        if gc_gen0_threshold is not None:
            tune_gc(gc_gen0_threshold)

    async def pid(self) -> int:
        return os.getpid()
