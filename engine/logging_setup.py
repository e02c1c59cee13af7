"""The one logging setup of every statefleet process: API, worker, ``up`` and the actors.

Before it, nothing configured logging: lines had no timestamp or level, uvicorn's
access log was off, and a dependency that stayed down printed a full traceback on every
retry. :func:`configure_logging` installs one handler on the root logger, so statefleet's
loggers, uvicorn's (its access log included) and the libraries' all come out alike:

- ``text`` (default): ``2026-01-02T03:04:05.678Z INFO statefleet.x: message``;
- ``json``: one JSON object per line with ``ts``, ``level``, ``logger``, ``message`` and,
  where the code passes them (``extra=``), ``tenant_id``, ``instance_id``, ``task_id``;
  an exception goes in ``exc_info``. The JSON encoding is python-json-logger's.

:class:`TracebackOnce` keeps retry loops readable: the first record of a kind (logger,
message template, exception type) carries its traceback; repeats within ten minutes
carry only the error, on the record's one line.

It lives in the engine because the Ray actors (``actors/``) may import only the engine;
they get a :class:`LogSettings` in their constructor and call :func:`configure_logging`
there, as the front door's commands do with ``statefleet.config.Settings``.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any, Literal

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from statefleet.engine.record import record

__all__ = ["LOG_FORMATS", "LogFormat", "LogSettings", "TracebackOnce", "configure_logging"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
#: The context fields a log call may pass with ``extra=``; JSON lines carry them.
CONTEXT_FIELDS = ("tenant_id", "instance_id", "task_id")
_TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@record
class LogSettings:
    """``STATEFLEET_LOG_LEVEL`` and ``STATEFLEET_LOG_FORMAT``, as plain data."""

    level: str = "INFO"
    format: LogFormat = "text"


def _iso(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class _TextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _iso(record.created)


class _JsonFormatter(JsonFormatter):
    """python-json-logger with statefleet's field names (``ts``, ``level``, ``logger``);
    uvicorn's ``color_message`` (the message again, with terminal colours) is left out."""

    def __init__(self) -> None:
        super().__init__(reserved_attrs=[*RESERVED_ATTRS, "color_message"])

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["ts"] = _iso(record.created)
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        super().add_fields(log_data, record, message_dict)


class TracebackOnce(logging.Filter):
    """Drops the traceback of a record already logged with one a moment ago.

    The key is (logger, message template, exception type): a retry loop that fails the
    same way again logs one line per attempt, ``message (ErrorType: error)``, and a
    new kind of failure gets its traceback. A kind not seen for ``window_s`` seconds
    gets its traceback again.
    """

    def __init__(self, window_s: float = 600.0, max_kinds: int = 1024) -> None:
        super().__init__()
        self.window_s = window_s
        self.max_kinds = max_kinds
        self._seen: dict[tuple[str, str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None:
            return True
        key = (record.name, str(record.msg), type(error).__qualname__)
        now = time.monotonic()
        last = self._seen.pop(key, None)
        self._seen[key] = now
        if len(self._seen) > self.max_kinds:
            self._seen.pop(next(iter(self._seen)))
        if last is not None and now - last < self.window_s:
            record.msg = f"{record.getMessage()} ({type(error).__name__}: {error})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler this module installed, so a second call replaces it."""


def configure_logging(settings: LogSettings | None = None) -> None:
    """Sends every logger's records to stderr in ``settings``' format and level.

    Idempotent: calling it again (a command after the API's start-up, an actor
    restarted in the same process) replaces its handler instead of adding another.
    """
    settings = settings or LogSettings()
    handler = _Handler(sys.stderr)
    formatter: logging.Formatter = (
        _JsonFormatter() if settings.format == "json" else _TextFormatter(_TEXT)
    )
    handler.setFormatter(formatter)
    handler.addFilter(TracebackOnce())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level.upper())
    # uvicorn's loggers go through the root handler, its access log included.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)
