"""statefleet: long-running, auditable, AI-native workflows as data."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__version__ = "0.1.0"

__all__ = ["__version__", "handler"]

_H = TypeVar("_H")


def handler(task_type: str) -> Callable[[_H], _H]:
    """``@statefleet.handler("TYPE")``: the decorated async function (or class) handles
    ``TYPE`` tasks, in every executor pool that imports its module (name the module in
    ``STATEFLEET_HANDLER_MODULES``; see docs/handlers.md).

    The engine's registry is imported on first use, so ``import statefleet`` stays light.
    """
    from statefleet.engine.handlers.registry import handler as register

    return register(task_type)
