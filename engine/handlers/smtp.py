"""SMTP connections kept open and reused by ``EMAIL`` tasks.

Opening an SMTP session costs a TCP connect, a greeting, ``EHLO`` (and ``STARTTLS`` and
``AUTH`` where configured) and ends with ``QUIT``: more round trips than the message
itself. aiosmtplib's ``send`` pays all of it per message; measured here against a local
server, reusing sessions doubled the messages per second. So each ``EmailHandler``
keeps up to ``size`` sessions and sends each message on an idle one (a session carries
any number of mail transactions). aiosmtplib has no pool of its own, hence this module.

A session that has been idle longer than ``max_idle_s`` is closed rather than reused
(servers drop idle clients), and a message whose reused session turns out to be gone
is sent once more on a fresh one: the server never accepted it, so this is not a
duplicate. Any other failure closes the session, whose state is then unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import aiosmtplib
from aiosmtplib import SMTPResponse, SMTPStatus

from statefleet.engine.mail_addresses import PLAIN_ADDRESS

if TYPE_CHECKING:
    from statefleet.engine.handlers.builtin import SmtpSettings

__all__ = ["SmtpConnections", "plain_sendmail"]

#: An address that goes on the command line as it is (the addresses nearly every
#: message has): see ``engine/mail_addresses.py``.
_PLAIN_ADDRESS = re.compile(PLAIN_ADDRESS)


class SmtpConnections:
    """Up to ``size`` open sessions to one server; :meth:`send`, then :meth:`aclose`."""

    def __init__(self, settings: SmtpSettings, size: int = 16, max_idle_s: float = 30.0) -> None:
        self.settings = settings
        self.max_idle_s = max_idle_s
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[aiosmtplib.SMTP, float]] = []

    async def send(
        self, sender: str, recipients: Sequence[str], data: bytes
    ) -> tuple[dict[str, Any], str]:
        """Sends ``data`` (a flattened message) to ``recipients``; returns (refused, reply)."""
        async with self._slots:
            client, reused = await self._take()
            try:
                result = await self._transaction(client, sender, recipients, data)
            except aiosmtplib.SMTPServerDisconnected:
                await self._discard(client)
                if not reused:
                    raise
                client = await self._open()
                try:
                    result = await self._transaction(client, sender, recipients, data)
                except BaseException:
                    await self._discard(client)
                    raise
            except aiosmtplib.SMTPRecipientsRefused:
                await self._release_after_refusal(client)
                raise
            except BaseException:
                await self._discard(client)
                raise
            self._idle.append((client, time.monotonic()))
            return result

    async def _transaction(
        self, client: aiosmtplib.SMTP, sender: str, recipients: Sequence[str], data: bytes
    ) -> tuple[dict[str, Any], str]:
        """One mail transaction within ``timeout_s`` as a whole.

        One deadline for the transaction rather than aiosmtplib's one per command (its
        ``wait_for`` around each of MAIL, RCPT, DATA and the data's end): the same bound
        on a server that stops answering, for one timer instead of four.
        """
        try:
            async with asyncio.timeout(self.settings.timeout_s):
                if _PLAIN_ADDRESS.fullmatch(sender) and all(
                    map(_PLAIN_ADDRESS.fullmatch, recipients)
                ):
                    return await plain_sendmail(client, sender, recipients, data)
                return await client.sendmail(sender, list(recipients), data, timeout=None)
        except TimeoutError as error:
            if isinstance(error, aiosmtplib.SMTPTimeoutError):
                raise
            # The type aiosmtplib raises for a command that gets no answer in time.
            raise aiosmtplib.SMTPReadTimeoutError(
                f"the SMTP server did not answer within {self.settings.timeout_s:g} s"
            ) from None

    async def aclose(self) -> None:
        """Says goodbye on every idle session."""
        idle, self._idle = self._idle, []
        for client, _ in idle:
            await self._discard(client, polite=True)

    async def _take(self) -> tuple[aiosmtplib.SMTP, bool]:
        now = time.monotonic()
        while self._idle:
            client, since = self._idle.pop()
            if now - since <= self.max_idle_s and client.is_connected:
                return client, True
            await self._discard(client, polite=True)
        return await self._open(), False

    async def _open(self) -> aiosmtplib.SMTP:
        client = await self._connect()
        if client.is_ehlo_or_helo_needed:  # what sendmail would do first (plain_sendmail)
            try:
                await client.ehlo()
            except aiosmtplib.SMTPHeloError:
                if not client.is_connected:
                    raise
                await client.helo()
        return client

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            username=s.username,
            password=s.password,
            start_tls=s.starttls,
            use_tls=s.use_tls,
            timeout=s.timeout_s,
        )
        await client.connect()
        return client

    async def _release_after_refusal(self, client: aiosmtplib.SMTP) -> None:
        """Every recipient refused: the transaction is over; ``RSET`` and keep the session."""
        try:
            await client.rset()
        except Exception:
            await self._discard(client)
            return
        self._idle.append((client, time.monotonic()))

    @staticmethod
    async def _discard(client: aiosmtplib.SMTP, *, polite: bool = False) -> None:
        if polite and client.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), timeout=2)
        client.close()


async def plain_sendmail(
    client: aiosmtplib.SMTP, sender: str, recipients: Sequence[str], data: bytes
) -> tuple[dict[str, SMTPResponse], str]:
    """aiosmtplib's ``sendmail`` for a sender and recipients that are plain addresses.

    ``sendmail`` parses every address twice with ``email.utils.parseaddr`` (to validate
    it, then to quote it on the command line): four parses for a one-recipient message,
    measured here as a third of an ``EMAIL`` task's CPU once the message itself was
    cheap. An address the ``_PLAIN_ADDRESS`` pattern accepts needs neither: it has no
    display name, no quoting, nothing that could smuggle a parameter onto the line. So
    this is ``sendmail``'s transaction written out for that case only, with its answers
    and errors (a refused sender, some or all recipients refused, a refused message,
    ``RSET`` after a refusal); ``tests/integration/test_smtp_envelope.py`` runs both
    against one server and compares them. It sends no ``SIZE`` parameter (optional in
    RFC 1870: a server then judges the size at the end of ``DATA``). The session must
    have said ``EHLO`` (``SmtpConnections._open`` does); no timeout of its own (the
    caller's deadline covers the whole transaction).
    """
    refused: list[aiosmtplib.SMTPRecipientRefused] = []
    try:
        answer = await client.execute_command(
            b"MAIL", b"FROM:<" + sender.encode("ascii") + b">", timeout=None
        )
        if answer.code != SMTPStatus.completed:
            raise aiosmtplib.SMTPSenderRefused(answer.code, answer.message, sender)
        for recipient in recipients:
            answer = await client.execute_command(
                b"RCPT", b"TO:<" + recipient.encode("ascii") + b">", timeout=None
            )
            if answer.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
                refused.append(
                    aiosmtplib.SMTPRecipientRefused(answer.code, answer.message, recipient)
                )
        if len(refused) == len(recipients):
            raise aiosmtplib.SMTPRecipientsRefused(refused)
        answer = await client.data(data, timeout=None)
    except (aiosmtplib.SMTPResponseException, aiosmtplib.SMTPRecipientsRefused):
        with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
            await client.rset(timeout=None)
        raise
    return {e.recipient: SMTPResponse(e.code, e.message) for e in refused}, answer.message
