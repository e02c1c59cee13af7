"""The shard actor: a thin Ray host for :class:`~statefleet.engine.runtime.hosts.ShardHost`.

Made a Ray actor by :mod:`statefleet.actors.factory` only. Everything it needs comes
in its constructor arguments (DSN, settings); it opens its own asyncpg pool on its
first call, inside the actor's event loop, and never touches a queue.
"""

from __future__ import annotations

import os
from typing import Any

from statefleet.actors.process import ActorProcess
from statefleet.engine.runtime.hosts import ShardHost

__all__ = ["ShardActor"]


class ShardActor(ShardHost):
    """A :class:`ShardHost` whose methods are the actor's remote API."""

    def __init__(self, *args: Any, process: ActorProcess | None = None) -> None:
        (process or ActorProcess()).apply()
        super().__init__(*args)

    async def pid(self) -> int:
        return os.getpid()
