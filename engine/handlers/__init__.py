"""Task handlers: the registry and the built-in task types."""

from statefleet.engine.handlers.base import Handler, PermanentTaskError, TaskContext
from statefleet.engine.handlers.builtin import (
    MANUAL_TYPES,
    EmailHandler,
    HttpHandler,
    SmtpSettings,
    noop_handler,
)
from statefleet.engine.handlers.registry import HandlerRegistry, UnknownTaskType

__all__ = [
    "MANUAL_TYPES",
    "EmailHandler",
    "Handler",
    "HandlerRegistry",
    "HttpHandler",
    "PermanentTaskError",
    "SmtpSettings",
    "TaskContext",
    "UnknownTaskType",
    "noop_handler",
]
