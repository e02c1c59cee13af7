"""Task type -> handler, with users' handlers from the ``statefleet.handlers`` entry points."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from importlib import import_module
from importlib.metadata import entry_points

from statefleet.engine.handlers.ai import AiHandler, AiSettings
from statefleet.engine.handlers.base import Handler
from statefleet.engine.handlers.builtin import (
    MANUAL_TYPES,
    EmailHandler,
    HttpHandler,
    SmtpSettings,
    noop_handler,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "HandlerFactory",
    "HandlerRegistry",
    "UnknownTaskType",
    "load_handler_factory",
]

ENTRY_POINT_GROUP = "statefleet.handlers"
log = logging.getLogger(__name__)


class UnknownTaskType(LookupError):
    """No handler is registered for a task's type; the task fails permanently."""


class HandlerRegistry:
    """A mutable map from task type to handler; build one per worker."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, task_type: str, handler: Handler) -> None:
        if task_type in MANUAL_TYPES:
            raise ValueError(f"{task_type} tasks are completed from outside and take no handler")
        self._handlers[task_type] = handler

    def get(self, task_type: str) -> Handler:
        try:
            return self._handlers[task_type]
        except KeyError:
            known = ", ".join(sorted(self._handlers)) or "none"
            raise UnknownTaskType(
                f"no handler for task type {task_type!r} (registered: {known})"
            ) from None

    async def aclose(self) -> None:
        """Closes what handlers hold open (an ``aclose()`` of theirs), once each.

        Handlers are built once per executor and keep clients (SMTP sessions, HTTP
        connection pools); the executor's host calls this when it stops.
        """
        seen: set[int] = set()
        for handler in self._handlers.values():
            close = getattr(handler, "aclose", None)
            if close is None or id(handler) in seen:
                continue
            seen.add(id(handler))
            try:
                await close()
            except Exception:
                log.warning("closing the %r handler failed", handler, exc_info=True)

    def __contains__(self, task_type: object) -> bool:
        return task_type in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._handlers))

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Registers every ``group`` entry point: name = task type, object = handler."""
        for point in entry_points(group=group):
            self.register(point.name, point.load())

    @classmethod
    def with_builtins(
        cls,
        smtp: SmtpSettings | None = None,
        *,
        entry_points_group: str | None = ENTRY_POINT_GROUP,
        ai: AiSettings | None = None,
    ) -> HandlerRegistry:
        """NOOP, EMAIL, HTTP and AI, then users' entry points (which may replace them).

        Settings left out are read from the environment (``STATEFLEET_SMTP_*``,
        ``STATEFLEET_AI_*``).
        """
        registry = cls()
        registry.register("NOOP", noop_handler)
        registry.register("EMAIL", EmailHandler(smtp))
        registry.register("HTTP", HttpHandler())
        registry.register("AI", AiHandler(ai))
        if entry_points_group:
            registry.load_entry_points(entry_points_group)
        return registry


#: Builds a handler registry where the handlers run (each executor pool, possibly a Ray
#: actor on another node): a picklable callable (a module-level function, a
#: ``functools.partial`` of one carrying its settings) or its import path
#: ``"package.module:function"``. Registries hold clients, so they are built where they
#: run, never pickled; whatever they need must be in the factory, not in the environment.
HandlerFactory = Callable[[], HandlerRegistry] | str


def load_handler_factory(factory: HandlerFactory) -> Callable[[], HandlerRegistry]:
    """The callable behind ``factory`` (importing ``"module:function"`` paths)."""
    if not isinstance(factory, str):
        return factory
    module_name, _, attribute = factory.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"a handler factory path is 'module:function', got {factory!r}")
    built: Callable[[], HandlerRegistry] = getattr(import_module(module_name), attribute)
    return built
