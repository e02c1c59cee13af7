"""The shard actor: a thin Ray host for :class:`~statefleet.engine.runtime.hosts.ShardHost`.

Made a Ray actor by :mod:`statefleet.actors.factory` only. Everything it needs comes
in its constructor arguments (DSN, settings); it opens its own asyncpg pool on its
first call, inside the actor's event loop, and never touches a queue.
"""

from __future__ import annotations

import os

from statefleet.engine.runtime.hosts import ShardHost

__all__ = ["ShardActor"]


class ShardActor(ShardHost):
    """A :class:`ShardHost` whose methods are the actor's remote API."""

    async def pid(self) -> int:
        return os.getpid()
