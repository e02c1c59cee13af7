"""Built-in handlers against real servers: an HTTP server on loopback, aiosmtpd for email."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any, ClassVar

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller
from runtime_support import Inbox, smtp_server

from statefleet.embedded import free_port
from statefleet.engine.handlers import (
    EmailHandler,
    HttpHandler,
    PermanentTaskError,
    TaskContext,
    noop_handler,
)
from statefleet.engine.handlers.builtin import SmtpSettings, message_id
from tests.http_support import serving


def context(task_type: str, input: Any) -> TaskContext:
    return TaskContext(
        tenant_id="acme",
        instance_id="i-1",
        task_id="t-1",
        task_type=task_type,
        name="step",
        input=input,
        attempt=1,
        max_attempts=3,
        idempotency_key="key-123",
    )


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = json.loads(self.rfile.read(length) or b"null")
        _Recorder.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status = int(self.path.rsplit("/", 1)[-1])
        payload = json.dumps({"status": status, "echo": body}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    _Recorder.seen = []
    with serving(_Recorder) as url:
        yield url


async def test_http_success_returns_status_and_json_body(http_server: str) -> None:
    output = await HttpHandler()(
        context("HTTP", {"url": f"{http_server}/hook/200", "json": {"a": 1}})
    )
    assert output == {"status": 200, "body": {"status": 200, "echo": {"a": 1}}}
    assert _Recorder.seen[0]["headers"]["Idempotency-Key"] == "key-123"


async def test_http_5xx_is_a_retryable_failure(http_server: str) -> None:
    with pytest.raises(RuntimeError, match="answered 503"):
        await HttpHandler()(context("HTTP", {"url": f"{http_server}/hook/503", "json": {}}))


async def test_http_4xx_is_a_permanent_failure(http_server: str) -> None:
    with pytest.raises(PermanentTaskError, match="answered 404"):
        await HttpHandler()(context("HTTP", {"url": f"{http_server}/hook/404", "json": {}}))


async def test_http_needs_a_url() -> None:
    with pytest.raises(PermanentTaskError, match="url"):
        await HttpHandler()(context("HTTP", {"json": {}}))


async def test_email_reaches_a_real_smtp_server_with_a_stable_message_id() -> None:
    with smtp_server() as (inbox, smtp):
        handler = EmailHandler(smtp)
        task = context(
            "EMAIL",
            {"to": ["a@example.com"], "cc": "b@example.com", "subject": "Hi", "text": "Hello"},
        )
        output = await handler(task)
    (message,) = inbox.messages
    assert message["Subject"] == "Hi"
    assert message["Cc"] == "b@example.com"
    assert message["Message-ID"] == output["messageId"] == message_id("key-123")
    assert output["accepted"] == ["a@example.com", "b@example.com"]


async def test_the_same_email_task_sent_twice_carries_the_same_message_id() -> None:
    """A success that could not be recorded makes the task run again, maybe on another
    pool: the second message must be recognisable downstream as the first one."""
    payload = {"to": "a@example.com", "subject": "Hi", "text": "Hello"}
    first = context("EMAIL", payload)
    again = dataclasses.replace(first, attempt=2, task_id="t-1")
    other = dataclasses.replace(first, idempotency_key="key-456")
    with smtp_server() as (inbox, smtp):
        for task in (first, again, other):
            handler = EmailHandler(smtp)  # a fresh handler each time, as a new pool would
            try:
                await handler(task)
            finally:
                await handler.aclose()
    ids = [message["Message-ID"] for message in inbox.messages]
    assert len(ids) == 3
    assert ids[0] == ids[1]
    assert ids[2] != ids[0]
    assert all(re.fullmatch(r"<[0-9a-f]{40}@statefleet>", value) for value in ids), ids


class _SilentAfterRcpt(Inbox):
    """Greets, accepts MAIL and RCPT, then never answers DATA's content."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        while not self.release.is_set():
            await asyncio.sleep(0.01)
        return await super().handle_DATA(server, session, envelope)


async def test_an_smtp_server_that_stops_answering_fails_the_attempt_in_timeout_s() -> None:
    """The transaction as a whole is bounded by ``STATEFLEET_SMTP_TIMEOUT``: each command
    answering in time is not enough, and the error is aiosmtplib's own timeout."""
    silent = _SilentAfterRcpt()
    port = free_port()
    controller = Controller(silent, hostname="127.0.0.1", port=port)
    controller.start()
    handler = EmailHandler(SmtpSettings(host="127.0.0.1", port=port, timeout_s=0.5))
    try:
        began = time.monotonic()
        with pytest.raises(aiosmtplib.SMTPReadTimeoutError, match=r"0\.5 s"):
            await handler(context("EMAIL", {"to": "a@example.com", "text": "hi"}))
        assert 0.5 <= time.monotonic() - began < 5
        assert silent.messages == []
    finally:
        silent.release.set()
        await handler.aclose()
        controller.stop()


async def test_email_without_recipient_is_permanent() -> None:
    with pytest.raises(PermanentTaskError, match="to"):
        await EmailHandler()(context("EMAIL", {"subject": "x"}))


async def test_noop_passes_its_input_through() -> None:
    assert await noop_handler(context("NOOP", {"k": [1, 2]})) == {"k": [1, 2]}
