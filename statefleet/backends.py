"""Which backend hosts the engine's shards and pools: Ray actors, or this process.

``STATEFLEET_BACKEND=ray`` (the default of ``statefleet up``, ``worker`` and ``demo``)
joins ``RAY_ADDRESS`` or starts a local Ray; ``local`` keeps them in this process (a
worker without Ray). Either way the same engine loop runs on top.
"""

from __future__ import annotations

import warnings
from typing import Any

import asyncpg

from statefleet.config import Settings
from statefleet.engine.handlers import HandlerFactory
from statefleet.engine.ports.backend import Backend
from statefleet.engine.runtime.local import LocalBackend
from statefleet.engine.runtime.observe import Observer
from statefleet.engine.runtime.settings import EngineSettings

__all__ = ["start_backend"]


def start_backend(
    settings: Settings,
    dsn: str,
    pool: asyncpg.Pool[Any],
    *,
    handlers: HandlerFactory | None = None,
    engine: EngineSettings | None = None,
    observer: Observer | None = None,
) -> Backend:
    """The backend ``settings.backend`` names, with ``settings``' handlers and knobs.

    Raises:
        statefleet.actors.backend.RayUnavailable: Ray cannot host the actors as configured.
    """
    handlers = handlers or settings.handlers()
    engine = engine or settings.engine()
    if settings.backend == "local":
        return LocalBackend(pool, handlers, engine, observer=observer)
    with warnings.catch_warnings():
        # Ray's import emits DeprecationWarnings of its own modules, not statefleet's.
        warnings.simplefilter("ignore", DeprecationWarning)
        from statefleet.actors.backend import RayBackend

    return RayBackend.start(
        dsn,
        handlers,
        engine,
        address=settings.ray_address,
        resources=settings.ray_resources,
        log=settings.logging(),
    )
