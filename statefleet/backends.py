"""Which backend hosts the engine's shards and pools: Ray actors, or this process.

``STATEFLEET_BACKEND=ray`` (the default of ``statefleet up``, ``worker`` and ``demo``)
joins ``RAY_ADDRESS`` or starts a local Ray; ``local`` keeps them in this process (a
worker without Ray). Either way the same engine loop runs on top.
"""

from __future__ import annotations

import warnings
from typing import Any

import asyncpg

from statefleet.config import ConfigError, Settings
from statefleet.engine.handlers import HandlerFactory, check_user_handlers
from statefleet.engine.ports.backend import Backend
from statefleet.engine.runtime.local import LocalBackend
from statefleet.engine.runtime.settings import EngineSettings

__all__ = ["start_backend"]


def start_backend(
    settings: Settings,
    dsn: str,
    pool: asyncpg.Pool[Any],
    *,
    handlers: HandlerFactory | None = None,
    engine: EngineSettings | None = None,
) -> Backend:
    """The backend ``settings.backend`` names, with ``settings``' handlers and knobs.

    Raises:
        ConfigError: users' handlers (entry points, ``STATEFLEET_HANDLER_MODULES``)
            cannot be loaded.
        statefleet.actors.backend.RayUnavailable: Ray cannot host the actors as configured.
    """
    handlers = handlers or _users_handlers(settings)
    engine = engine or settings.engine()
    if settings.backend == "local":
        return LocalBackend(pool, handlers, engine)
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
        trace=settings.tracing(),
    )


def _users_handlers(settings: Settings) -> HandlerFactory:
    """``settings``' handler factory, once users' handlers were found loadable here.

    The pools import them again wherever they run; checking in this process first turns
    a typo into a startup error naming it, instead of every task failing in a pool.
    """
    try:
        check_user_handlers(settings.handler_modules)
    except Exception as error:
        where = "STATEFLEET_HANDLER_MODULES or a statefleet.handlers entry point"
        raise ConfigError([f"{error} ({where}; see docs/handlers.md)"]) from error
    return settings.handlers()
