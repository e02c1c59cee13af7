"""Task type -> handler, with users' handlers from the ``statefleet.handlers`` entry points
and from modules that register theirs with :func:`handler` (see docs/handlers.md)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, TypeVar, cast

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
    "check_user_handlers",
    "handler",
    "load_handler_factory",
]

ENTRY_POINT_GROUP = "statefleet.handlers"
log = logging.getLogger(__name__)
H = TypeVar("H")

#: What :func:`handler` recorded, per defining module: task type -> function or class.
#: Process-wide, as decorators run at import; a registry takes only the entries of the
#: modules it is told to load, so an import elsewhere never adds a task type by surprise.
_DECORATED: dict[str, dict[str, Any]] = {}


def handler(task_type: str) -> Callable[[H], H]:
    """Registers the decorated async function (or class) as ``task_type``'s handler.

    For code that is not packaged with an entry point: name its module in
    ``STATEFLEET_HANDLER_MODULES`` and every executor pool imports it (on whatever Ray
    node it runs), which runs this decorator there. Returns the object unchanged.
    """
    if not task_type or not isinstance(task_type, str):
        raise ValueError(f"a task type is a non-empty string, got {task_type!r}")

    def register(target: H) -> H:
        module = getattr(target, "__module__", None)
        if not isinstance(module, str) or not callable(target):
            raise TypeError(f"@handler({task_type!r}) decorates a function or class")
        _DECORATED.setdefault(module, {})[task_type] = target
        return target

    return register


def _build(target: Any, env: Mapping[str, str]) -> Handler:
    """A handler from what users registered: a class is instantiated here, once per
    registry (that is, once per executor), with its settings; a function is used as is."""
    if inspect.isclass(target):
        return cast(Callable[[dict[str, str]], Handler], target)(dict(env))
    return cast(Handler, target)


def _decorated_in(modules: Sequence[str]) -> dict[str, Any]:
    """Imports ``modules`` and returns what they (and their submodules) registered."""
    found: dict[str, Any] = {}
    for name in modules:
        import_module(name)
    for module, registered in _DECORATED.items():
        if any(module == name or module.startswith(name + ".") for name in modules):
            found.update(registered)
    return found


def check_user_handlers(
    modules: Sequence[str] = (), group: str | None = ENTRY_POINT_GROUP
) -> list[str]:
    """Loads users' handlers without building them: the task types they provide.

    Run by the commands before they start anything, so that a missing module or a
    broken entry point stops ``statefleet up``/``worker`` at once with its name, rather
    than failing every task inside a pool actor.

    Raises:
        ImportError: a module or entry point cannot be loaded (the message names it).
        TypeError: what it names cannot be a handler (not callable, or a class whose
            constructor does not take the one ``env`` argument).
    """
    for name in modules:
        try:
            import_module(name)
        except Exception as error:
            raise ImportError(
                f"handler module {name!r} cannot be imported: {type(error).__name__}: {error}"
            ) from error
    found = _decorated_in(modules)
    for point in entry_points(group=group) if group else ():
        try:
            found[point.name] = point.load()
        except Exception as error:
            raise ImportError(
                f"entry point {point.name!r} = {point.value!r} of group {group!r} "
                f"cannot be loaded: {type(error).__name__}: {error}"
            ) from error
    for task_type, target in found.items():
        _check_shape(task_type, target)
    return sorted(found)


def _check_shape(task_type: str, target: Any) -> None:
    """A function is called per task; a class is built once as ``Class(env)``."""
    if task_type in MANUAL_TYPES:
        raise TypeError(f"{task_type} tasks are completed from outside and take no handler")
    if not callable(target):
        raise TypeError(f"the {task_type} handler {target!r} is not callable")
    if inspect.isclass(target):
        try:
            inspect.signature(target).bind({})
        except TypeError:
            raise TypeError(
                f"the {task_type} handler class {target.__qualname__} must take one "
                "argument, the settings mapping: Class(env)"
            ) from None
        except ValueError:  # no signature to read (a builtin): let the build decide
            return


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

    def load_entry_points(
        self, group: str = ENTRY_POINT_GROUP, env: Mapping[str, str] | None = None
    ) -> None:
        """Registers every ``group`` entry point: name = task type, object = handler.

        An object that is a class is instantiated once, here, as ``Class(env)``.
        """
        for point in entry_points(group=group):
            self.register(point.name, _build(point.load(), env or {}))

    def load_modules(self, modules: Sequence[str], env: Mapping[str, str] | None = None) -> None:
        """Imports ``modules`` and registers the handlers they declared with :func:`handler`."""
        for task_type, target in _decorated_in(modules).items():
            self.register(task_type, _build(target, env or {}))

    @classmethod
    def with_builtins(
        cls,
        smtp: SmtpSettings | None = None,
        *,
        entry_points_group: str | None = ENTRY_POINT_GROUP,
        ai: AiSettings | None = None,
        modules: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> HandlerRegistry:
        """NOOP, EMAIL, HTTP and AI, then users' entry points and ``modules`` (which may
        replace them); ``env`` is what users' handler classes are built with.

        Settings left out are read from the environment (``STATEFLEET_SMTP_*``,
        ``STATEFLEET_AI_*``).
        """
        registry = cls()
        registry.register("NOOP", noop_handler)
        registry.register("EMAIL", EmailHandler(smtp))
        registry.register("HTTP", HttpHandler())
        registry.register("AI", AiHandler(ai))
        if entry_points_group:
            registry.load_entry_points(entry_points_group, env)
        registry.load_modules(modules, env)
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
