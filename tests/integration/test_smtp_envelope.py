"""The plain-address transaction of EMAIL tasks answers as aiosmtplib's ``sendmail`` does.

``plain_sendmail`` writes ``sendmail``'s transaction out for plain addresses (no
parsing); both run here against one real server (aiosmtpd) that refuses some senders
and recipients, and must leave the same envelopes and raise the same errors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller

from statefleet.embedded import free_port
from statefleet.engine.handlers.smtp import plain_sendmail

MESSAGE = b"Subject: hi\r\n\r\nhello\r\n.starts with a dot\r\n"


@dataclasses.dataclass
class Picky:
    """Refuses senders and recipients whose local part starts with ``refuse``."""

    received: list[tuple[str, list[str], bytes]] = dataclasses.field(default_factory=list)

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("refuse"):
            return "553 5.7.1 sender not allowed"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("refuse"):
            return "550 5.1.1 no such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 queued"


@pytest.fixture
async def server() -> AsyncIterator[tuple[Picky, aiosmtplib.SMTP]]:
    picky = Picky()
    port = free_port()
    controller = Controller(picky, hostname="127.0.0.1", port=port)
    controller.start()
    client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, timeout=10)
    await client.connect()
    await client.ehlo()
    try:
        yield picky, client
    finally:
        client.close()
        controller.stop()


async def both(
    server: tuple[Picky, aiosmtplib.SMTP], sender: str, recipients: list[str]
) -> tuple[list[Any], list[Any], list[Any]]:
    """Each way's answer (or error), and what the server received each time."""
    picky, client = server
    answers: list[Any] = []
    received: list[Any] = []
    for send in (plain_sendmail, _library):
        before = len(picky.received)
        try:
            answers.append(await send(client, sender, recipients, MESSAGE))
        except aiosmtplib.SMTPException as error:
            answers.append(_described(error))
        received.append(picky.received[before:])
    return answers, received, [await client.noop()]


async def _library(client: aiosmtplib.SMTP, sender: str, recipients: list[str], data: bytes) -> Any:
    return await client.sendmail(sender, recipients, data)


def _described(error: aiosmtplib.SMTPException) -> tuple[Any, ...]:
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        return (type(error), [(r.code, r.message, r.recipient) for r in error.recipients])
    if isinstance(error, aiosmtplib.SMTPSenderRefused):
        return (type(error), error.code, error.message, error.sender)
    return (type(error), str(error))


@pytest.mark.parametrize(
    ("sender", "recipients"),
    [
        ("engine@example.com", ["ada@example.com"]),
        ("engine@example.com", ["ada@example.com", "refuse.bob@example.com", "c.d+e@x-y.org"]),
        ("engine@example.com", ["refuse@example.com", "refuse.too@example.com"]),
        ("refuse@example.com", ["ada@example.com"]),
    ],
    ids=["accepted", "one-refused", "all-refused", "sender-refused"],
)
async def test_plain_sendmail_answers_and_delivers_as_sendmail(
    server: tuple[Picky, aiosmtplib.SMTP], sender: str, recipients: list[str]
) -> None:
    (plain, library), (got_plain, got_library), (after,) = await both(server, sender, recipients)
    assert plain == library
    assert got_plain == got_library
    # The session is usable after either, refusals included (a RSET ended the transaction).
    assert after.code == 250


async def test_an_accepted_message_arrives_with_its_envelope(
    server: tuple[Picky, aiosmtplib.SMTP],
) -> None:
    picky, client = server
    refused, answer = await plain_sendmail(
        client, "engine@example.com", ["ada@example.com", "refuse@example.com"], MESSAGE
    )
    ((sender, recipients, content),) = picky.received
    assert (sender, recipients) == ("engine@example.com", ["ada@example.com"])
    assert content.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")
    assert list(refused) == ["refuse@example.com"]
    assert refused["refuse@example.com"].code == 550
    assert "queued" in answer
