"""The executor pool actor: a thin Ray host for :class:`~statefleet.engine.runtime.hosts.PoolHost`.

Made a Ray actor by :mod:`statefleet.actors.factory` only. It builds its handler
registry from the factory it was created with (which carries the SMTP, HTTP and AI
settings of the process that created it) on its first call, and returns committed
outbox rows instead of publishing them.
"""

from __future__ import annotations

import os

from statefleet.engine.runtime.hosts import PoolHost

__all__ = ["PoolActor"]


class PoolActor(PoolHost):
    """A :class:`PoolHost` whose methods are the actor's remote API."""

    async def pid(self) -> int:
        return os.getpid()
