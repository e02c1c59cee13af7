"""The local mail sink that ``statefleet up`` and ``demo`` use when no SMTP server is set."""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
import time
from email import message_from_bytes

import psutil

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


def test_the_sink_process_stops_with_its_parent_even_after_a_sigkill() -> None:
    with subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, text=True
    ) as parent:
        assert parent.stdout is not None
        sink_pid = int(parent.stdout.readline())
        assert psutil.pid_exists(sink_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 10
        while psutil.pid_exists(sink_pid) and psutil.Process(sink_pid).status() != "zombie":
            assert time.monotonic() < deadline, "the sink outlived its SIGKILLed parent"
            time.sleep(0.05)


PARENT = """
import sys, time
from statefleet.mailsink import running_mail_sink
with running_mail_sink() as (sink, port):
    print(sink.pid, flush=True)
    time.sleep(60)
"""
