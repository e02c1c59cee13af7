"""The local mail sink that ``statefleet up`` and ``demo`` use when no SMTP server is set."""

from __future__ import annotations

import pathlib
from email import message_from_bytes

from statefleet.engine.handlers import EmailHandler, SmtpSettings, TaskContext
from statefleet.mailsink import running_mail_sink


async def test_the_sink_keeps_every_message_an_email_task_sends(tmp_path: pathlib.Path) -> None:
    task = TaskContext(
        tenant_id="default",
        instance_id="i-1",
        task_id="t-1",
        task_type="EMAIL",
        name="send-hello",
        input={"to": "user@example.com", "subject": "Hello", "text": "hi"},
        attempt=1,
        max_attempts=3,
        idempotency_key="t-1",
    )
    with running_mail_sink(tmp_path / "mail") as (sink, port):
        await EmailHandler(SmtpSettings(host="127.0.0.1", port=port))(task)
    (saved,) = (tmp_path / "mail").glob("*.eml")
    message = message_from_bytes(saved.read_bytes())
    assert sink.received == 1
    assert (message["To"], message["Subject"]) == ("user@example.com", "Hello")
