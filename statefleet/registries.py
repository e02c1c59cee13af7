"""Handler factories the commands hand to executor pools (see ``HandlerFactory``).

Each is a module-level function, so a ``functools.partial`` of it pickles by reference
and carries its settings to a Ray actor on any node: the actor builds its registry
from the arguments, never from the environment of the node it landed on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from statefleet.engine.handlers import (
    AiSettings,
    HandlerRegistry,
    SmtpSettings,
    noop_handler,
)

__all__ = ["builtin_registry", "hello_noop", "noop_registry"]


def builtin_registry(
    smtp: SmtpSettings | None = None,
    ai: AiSettings | None = None,
    modules: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
) -> HandlerRegistry:
    """NOOP, EMAIL, HTTP, AI, users' entry points and ``modules``, with the given settings.

    ``modules`` (``STATEFLEET_HANDLER_MODULES``) are imported where this runs, the pool;
    ``env`` (the variables ``STATEFLEET_HANDLER_ENV`` names, as the worker saw them) is
    what users' handler classes are built with. Called without settings (tests), the
    handlers fall back to their defaults.
    """
    return HandlerRegistry.with_builtins(
        smtp or SmtpSettings(), ai=ai or AiSettings(), modules=modules, env=env
    )


def noop_registry(*task_types: str) -> HandlerRegistry:
    """A registry where every given task type succeeds at once (tests, benchmarks)."""
    registry = HandlerRegistry()
    for task_type in task_types:
        registry.register(task_type, noop_handler)
    return registry


def hello_noop() -> HandlerRegistry:
    """The hello workflow's registry with its e-mail step a no-op (demo, benchmarks)."""
    return noop_registry("EMAIL")
