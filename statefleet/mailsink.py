"""A local SMTP server (aiosmtpd) that keeps what it receives, for demos and ``up``.

A newcomer's ``EMAIL`` steps should work without a mail server: ``statefleet demo``
and ``statefleet up`` (when ``STATEFLEET_SMTP_HOST`` is unset) point the engine at
this sink instead. Messages are counted and, given a directory, saved as ``.eml``
files, so the tour can show what would have been sent.
"""

from __future__ import annotations

import pathlib
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiosmtpd.controller import Controller

__all__ = ["MailSink", "running_mail_sink"]


class MailSink:
    """aiosmtpd's handler API: accepts every message, counts it, maybe saves it."""

    def __init__(self, directory: pathlib.Path | None = None) -> None:
        self.directory = directory
        self.received = 0
        self._lock = threading.Lock()
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self._lock:
            self.received += 1
        if self.directory is not None:
            (self.directory / f"{uuid.uuid4()}.eml").write_bytes(envelope.content)
        return "250 OK"


@contextmanager
def running_mail_sink(directory: pathlib.Path | None = None) -> Iterator[tuple[MailSink, int]]:
    """Runs the sink on a free 127.0.0.1 port; yields it and the port."""
    from statefleet.embedded import free_port

    sink = MailSink(directory)
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()
