"""A local SMTP server (aiosmtpd) that keeps what it receives, for demos and ``up``.

A newcomer's ``EMAIL`` steps should work without a mail server: ``statefleet demo``
and ``statefleet up`` (when ``STATEFLEET_SMTP_HOST`` is unset) point the engine at
this sink instead. Messages are counted and, given a directory, saved as ``.eml``
files, so the tour can show what would have been sent.

The sink runs in a process of its own (``python -m statefleet.mailsink``), as a real
mail server would: in the engine's process it took a share of the one core that
process has, and a demo's throughput measured the sink as much as the engine. The
count travels through a small file the sink rewrites at most every 50 ms and once
more when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from statefleet.engine.mail_addresses import PLAIN_ADDRESS

if TYPE_CHECKING:
    from aiosmtpd.smtp import SMTP

__all__ = ["MailSink", "RunningSink", "running_mail_sink", "sink_smtp"]

#: ``<plain address>``, then ESMTP parameters: the paths of nearly every ``MAIL FROM``
#: and ``RCPT TO`` (a plain address: ``engine/mail_addresses.py``).
_PLAIN_PATH = re.compile(rf"[ \t]*<({PLAIN_ADDRESS})>(?:[ \t]+([A-Za-z0-9][ -~]*))?")


class MailSink:
    """aiosmtpd's handler API: accepts every message, counts it, maybe saves it."""

    def __init__(self, directory: pathlib.Path | None = None) -> None:
        self.directory = directory
        self.received = 0
        if directory is not None:
            directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        if self.directory is not None:
            (self.directory / f"{uuid.uuid4()}.eml").write_bytes(envelope.content)
        return "250 OK"


class RunningSink:
    """The sink process as its parent sees it: how many messages it received."""

    def __init__(self, count_file: pathlib.Path, pid: int) -> None:
        self._count_file = count_file
        self._final: int | None = None
        #: The sink process's id.
        self.pid = pid

    @property
    def received(self) -> int:
        if self._final is not None:
            return self._final
        with contextlib.suppress(OSError, ValueError):
            return int(self._count_file.read_text() or 0)
        return 0

    async def settled(self, at_least: int, timeout: float = 10.0) -> int:
        """The count once it reaches ``at_least``, or after ``timeout`` s, whichever first.

        The sink rewrites its count at most every 50 ms, so right after the last task
        that sent a message commits, the count read here may still lag behind it.
        """
        deadline = time.monotonic() + timeout
        while self.received < at_least and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return self.received

    def _stopped(self) -> None:
        self._final = self.received


@contextlib.contextmanager
def running_mail_sink(
    directory: pathlib.Path | None = None, *, start_timeout: float = 30.0
) -> Iterator[tuple[RunningSink, int]]:
    """Runs the sink in its own process on a free 127.0.0.1 port; yields it and the port."""
    from statefleet.embedded import free_port, set_parent_death_signal

    port = free_port()
    scratch = pathlib.Path(tempfile.mkdtemp(prefix="statefleet-mailsink-"))
    count_file = scratch / "count"
    argv = [sys.executable, "-m", "statefleet.mailsink", str(port), str(count_file)]
    if directory is not None:
        argv.append(str(directory))
    # Its own session (a terminal's Ctrl-C reaches the parent, which stops it in order),
    # and it stops with its parent even when that one is SIGKILLed.
    process = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=set_parent_death_signal,
    )
    sink = RunningSink(count_file, process.pid)
    try:
        deadline = time.monotonic() + start_timeout
        while not count_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the mail sink did not start (exit {process.poll()})")
            time.sleep(0.02)
        yield sink, port
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        sink._stopped()  # the count written as it stopped stays readable after the block
        shutil.rmtree(scratch, ignore_errors=True)


def sink_smtp() -> type[SMTP]:
    """aiosmtpd's ``SMTP`` with a fast path for plain addresses (imported lazily).

    aiosmtpd parses the path of every ``MAIL FROM`` and ``RCPT TO`` with the ``email``
    package's RFC 5322 header parser and declares a ``typing.Protocol`` class on every
    call: measured here, more than half of the sink's CPU per message, so that a demo's
    or a benchmark's sink took an eighth of the machine. A path that is a plain
    ``<dot-atom@domain>`` (optionally followed by parameters) is read with a regular
    expression instead, giving what aiosmtpd's parser gives (the property test in
    ``tests/unit/test_mailsink_paths.py`` compares them); any other path (quoted local
    parts, comments, source routes, an empty ``<>``) still goes to aiosmtpd. It
    overrides a private method: a future aiosmtpd without it would only be slower.
    """
    from aiosmtpd.smtp import SMTP

    class SinkSMTP(SMTP):
        def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
            plain = _PLAIN_PATH.fullmatch(arg)
            if plain is None:
                return super()._getaddr(arg)
            address, rest = plain.group(1), plain.group(2) or ""
            local_part = address.rpartition("@")[0]
            if self.local_part_limit and len(local_part) > self.local_part_limit:
                return None, None
            return address, rest

    return SinkSMTP


def _write(path: pathlib.Path, value: int) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(str(value))
    os.replace(temporary, path)


async def _serve(port: int, count_file: pathlib.Path, directory: pathlib.Path | None) -> None:
    smtp = sink_smtp()
    sink = MailSink(directory)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await loop.create_server(lambda: smtp(sink), "127.0.0.1", port)
    written = -1
    while not stop.is_set():
        if sink.received != written:
            written = sink.received
            _write(count_file, written)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.05)
    server.close()
    _write(count_file, sink.received)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m statefleet.mailsink")
    parser.add_argument("port", type=int)
    parser.add_argument("count_file", type=pathlib.Path)
    parser.add_argument("directory", type=pathlib.Path, nargs="?")
    args = parser.parse_args(argv)
    import uvloop

    uvloop.run(_serve(args.port, args.count_file, args.directory))


if __name__ == "__main__":
    main()
