"""The executor pool actor: a thin Ray host for :class:`~statefleet.engine.runtime.hosts.PoolHost`.

Made a Ray actor by :mod:`statefleet.actors.factory` only. It builds its handler
registry from the factory it was created with (which carries the SMTP, HTTP and AI
settings of the process that created it) on its first call, and returns committed
outbox rows instead of publishing them.
"""

from __future__ import annotations

import os
from typing import Any

import ray

from statefleet.actors.process import ActorProcess
from statefleet.engine.runtime.hosts import PoolHost

__all__ = ["PoolActor"]


class PoolActor(PoolHost):
    """A :class:`PoolHost` whose methods are the actor's remote API."""

    def __init__(self, *args: Any, process: ActorProcess | None = None) -> None:
        (process or ActorProcess()).apply()
        # The actor's name is the same in every life of it: a restarted pool gives up
        # the task claims of its previous life at once instead of waiting their leases.
        name = ray.get_runtime_context().get_actor_name() or None
        super().__init__(*args, identity=name)

    async def pid(self) -> int:
        return os.getpid()
