"""Built-in task types: ``EMAIL``, ``HTTP``, ``NOOP`` (and ``HUMAN``, which never runs).

``HUMAN`` tasks have no handler on purpose: they wait until someone completes
them from outside (the API), so the task runner never claims them.
"""

from __future__ import annotations

import email.policy
import functools
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import field
from email.message import EmailMessage
from email.mime.text import MIMEText
from email.utils import parseaddr
from typing import Any

import aiosmtplib
import httpx

from statefleet.engine.handlers.base import PermanentTaskError, TaskContext
from statefleet.engine.handlers.smtp import SmtpConnections
from statefleet.engine.record import record

__all__ = ["MANUAL_TYPES", "EmailHandler", "HttpHandler", "SmtpSettings", "noop_handler"]

#: Task types completed from outside, never by a worker.
MANUAL_TYPES = frozenset({"HUMAN"})


async def noop_handler(task: TaskContext) -> Any:
    """Does nothing and returns its input, so a workflow can pass data through a step."""
    return task.input


@record
class SmtpSettings:
    """Where ``EMAIL`` tasks are sent; read from ``STATEFLEET_SMTP_*``."""

    host: str = "localhost"
    port: int = 25
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "statefleet@localhost"
    starttls: bool = False
    use_tls: bool = False
    timeout_s: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmtpSettings:
        env = os.environ if env is None else env

        def flag(name: str) -> bool:
            return env.get(name, "").lower() in ("1", "true", "yes")

        return cls(
            host=env.get("STATEFLEET_SMTP_HOST", "localhost"),
            port=int(env.get("STATEFLEET_SMTP_PORT", "25")),
            username=env.get("STATEFLEET_SMTP_USERNAME") or None,
            password=env.get("STATEFLEET_SMTP_PASSWORD") or None,
            sender=env.get("STATEFLEET_SMTP_FROM", "statefleet@localhost"),
            starttls=flag("STATEFLEET_SMTP_STARTTLS"),
            use_tls=flag("STATEFLEET_SMTP_TLS"),
            timeout_s=float(env.get("STATEFLEET_SMTP_TIMEOUT", "30")),
        )


_BREAKS = re.compile(r"[\r\n]")
#: SMTP lines end at 998 characters; a header value this short fits unfolded.
_MAX_PLAIN = 900
_UNFOLDED = email.policy.compat32.clone(linesep="\r\n", max_line_length=None)


def _addresses(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and "@" in v for v in items):
        raise PermanentTaskError(f"EMAIL input `{field}` must be an address or a list of them")
    return list(items)


def _message(headers: dict[str, str], text: str, html: str | None) -> bytes:
    """The message to send, as SMTP DATA (CRLF line ends): plain ASCII takes a fast path.

    ``EmailMessage`` with the default policy parses every header through the header
    registry: measured here, 500 us to build and flatten a one-line message, a quarter
    of an executor's work per ``EMAIL`` task. The compat32 ``MIMEText`` does the same
    message in 90 us, but checks nothing, so it is used only for a text message whose
    header values are short ASCII with no line breaks (written unfolded, as the default
    policy writes them); anything else (non-ASCII names or subjects, line breaks, long
    values, an HTML part) goes through ``EmailMessage``, which encodes or refuses it.
    The commonest case of all goes faster still (:func:`_plain_ascii`).
    """
    present = {name: value for name, value in headers.items() if value}
    plain = all(
        value.isascii() and len(value) < _MAX_PLAIN and not _BREAKS.search(value)
        for value in present.values()
    )
    if plain and html is None:
        if text.isascii() and "\r" not in text and all(map(_PRINTABLE.fullmatch, present.values())):
            return _plain_ascii(present, text)
        fast = MIMEText(text, "plain", "us-ascii" if text.isascii() else "utf-8")
        for name, value in present.items():
            fast[name] = value
        return fast.as_bytes(policy=_UNFOLDED)
    message = EmailMessage()
    for name, value in present.items():
        message[name] = value
    message.set_content(text)
    if html is not None:
        message.add_alternative(html, subtype="html")
    return message.as_bytes(policy=email.policy.SMTP)


#: What ``MIMEText(text, "plain", "us-ascii")`` writes before the caller's headers.
_PLAIN_ASCII_HEAD = (
    'Content-Type: text/plain; charset="us-ascii"\r\n'
    "MIME-Version: 1.0\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
)
#: Header values the fast path writes as they are: printable ASCII (space included).
_PRINTABLE = re.compile(r"[ -~]*")


def _plain_ascii(headers: dict[str, str], text: str) -> bytes:
    """The bytes ``MIMEText`` would write for printable-ASCII headers and an ASCII text
    without carriage returns, written directly.

    Written by hand because the ``email`` package's generator folds and encodes every
    header through ``Header`` even when there is nothing to fold or encode: a third of
    an ``EMAIL`` task's CPU in an executor pool (profiled in a cluster run). The
    output is the same, byte for byte; ``tests/unit/test_email_message.py`` checks it
    against ``MIMEText`` on generated headers and texts.
    """
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    body = text.replace("\n", "\r\n")
    return f"{_PLAIN_ASCII_HEAD}{lines}\r\n{body}".encode("ascii")


@functools.lru_cache(maxsize=256)
def _envelope_sender(from_header: str) -> str:
    """The address in a ``From`` header: parsed once per distinct header (usually one,
    the configured sender), as the parse costs a tenth of an ``EMAIL`` task's CPU."""
    return parseaddr(from_header)[1] or from_header


def message_id(idempotency_key: str) -> str:
    """The ``Message-ID`` of an ``EMAIL`` task: a function of its idempotency key alone.

    Every attempt of the task sends the same header, so a message sent again after a
    success that could not be recorded is recognisable downstream as a repeat.
    ``email.utils.make_msgid`` adds the time, the pid and randomness, and the sender's
    domain may change between attempts, so neither takes part. The key is hashed:
    it may hold characters a Message-ID may not.
    """
    digest = hashlib.blake2b(idempotency_key.encode(), digest_size=20).hexdigest()
    return f"<{digest}@statefleet>"


class EmailHandler:
    """Sends one email over SMTP (aiosmtplib).

    Input: ``to`` (address or list), ``subject``, ``text`` or ``body``, optional
    ``html``, ``cc``, ``bcc``, ``from``, ``replyTo``. The Message-ID is derived
    from the task's idempotency key, so a retried send is recognisable as the
    same message downstream.
    """

    def __init__(self, settings: SmtpSettings | None = None) -> None:
        self.settings = settings or SmtpSettings.from_env()
        # Sessions kept open between messages: see engine/handlers/smtp.py.
        self.connections = SmtpConnections(self.settings)

    async def aclose(self) -> None:
        await self.connections.aclose()

    async def __call__(self, task: TaskContext) -> Any:
        data = task.input if isinstance(task.input, dict) else {}
        to = _addresses(data.get("to"), "to")
        if not to:
            raise PermanentTaskError("EMAIL input needs `to`")
        cc = _addresses(data.get("cc"), "cc")
        bcc = _addresses(data.get("bcc"), "bcc")
        headers = {
            "From": str(data.get("from") or self.settings.sender),
            "To": ", ".join(to),
            "Cc": ", ".join(cc),
            "Reply-To": str(data.get("replyTo") or ""),
            "Subject": str(data.get("subject", "")),
        }
        headers["Message-ID"] = message_id(task.idempotency_key)
        text = str(data.get("text", data.get("body", "")))
        html = str(data["html"]) if data.get("html") else None
        raw = _message(headers, text, html)
        sender = _envelope_sender(headers["From"])
        try:
            errors, response = await self.connections.send(sender, [*to, *cc, *bcc], raw)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise PermanentTaskError(f"all recipients refused: {exc}") from None
        return {
            "messageId": headers["Message-ID"],
            "accepted": [r for r in [*to, *cc, *bcc] if r not in errors],
            "refused": sorted(errors),
            "response": response,
        }


class HttpHandler:
    """Calls an HTTP endpoint (httpx); a status >= 400 fails the attempt.

    Input: ``url``, ``method`` (default POST), ``headers``, ``json`` or ``body``,
    ``timeoutMs``. 4xx answers other than 408 and 429 are permanent failures (a
    retry would get the same answer); 5xx, 408, 429 and network errors are
    retried under the task's policy. ``Idempotency-Key`` carries the task's key.
    """

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client

    async def __call__(self, task: TaskContext) -> Any:
        data = task.input if isinstance(task.input, dict) else {}
        url = data.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise PermanentTaskError("HTTP input needs an http(s) `url`")
        method = str(data.get("method", "POST")).upper()
        headers = {"Idempotency-Key": task.idempotency_key}
        headers.update({str(k): str(v) for k, v in (data.get("headers") or {}).items()})
        timeout = float(data.get("timeoutMs", task.timeout_ms or 30_000)) / 1000
        kwargs: dict[str, Any] = {"headers": headers, "timeout": timeout}
        if "json" in data:
            kwargs["json"] = data["json"]
        elif "body" in data:
            kwargs["content"] = str(data["body"])
        if self._client is not None:
            response = await self._client.request(method, url, **kwargs)
        else:
            async with httpx.AsyncClient() as client:
                response = await client.request(method, url, **kwargs)
        body: Any
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            message = f"{method} {url} answered {response.status_code}"
            if response.status_code < 500 and response.status_code not in (408, 429):
                raise PermanentTaskError(message)
            raise RuntimeError(message)
        return {"status": response.status_code, "body": body}
