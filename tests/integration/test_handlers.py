"""Built-in handlers against real servers: an HTTP server on loopback, aiosmtpd for email."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest
from runtime_support import smtp_server

from statefleet.engine.handlers import (
    EmailHandler,
    HttpHandler,
    PermanentTaskError,
    TaskContext,
    noop_handler,
)


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
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


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
    assert "key-123" in message["Message-ID"]
    assert output["accepted"] == ["a@example.com", "b@example.com"]


async def test_email_without_recipient_is_permanent() -> None:
    with pytest.raises(PermanentTaskError, match="to"):
        await EmailHandler()(context("EMAIL", {"subject": "x"}))


async def test_noop_passes_its_input_through() -> None:
    assert await noop_handler(context("NOOP", {"k": [1, 2]})) == {"k": [1, 2]}
