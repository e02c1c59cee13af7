"""Task handlers: the registry and the built-in task types."""

from statefleet.engine.handlers.ai import AiHandler, AiSettings
from statefleet.engine.handlers.base import (
    Emit,
    Handler,
    HandlerResult,
    PermanentTaskError,
    TaskContext,
)
from statefleet.engine.handlers.builtin import (
    MANUAL_TYPES,
    EmailHandler,
    HttpHandler,
    SmtpSettings,
    noop_handler,
)
from statefleet.engine.handlers.registry import (
    HandlerFactory,
    HandlerRegistry,
    UnknownTaskType,
    check_user_handlers,
    handler,
    load_handler_factory,
)

__all__ = [
    "MANUAL_TYPES",
    "AiHandler",
    "AiSettings",
    "EmailHandler",
    "Emit",
    "Handler",
    "HandlerFactory",
    "HandlerRegistry",
    "HandlerResult",
    "HttpHandler",
    "PermanentTaskError",
    "SmtpSettings",
    "TaskContext",
    "UnknownTaskType",
    "check_user_handlers",
    "handler",
    "load_handler_factory",
    "noop_handler",
]
