"""An SMTP server that counts what it receives: the cluster benchmark's mail server.

``python -m benchmarks.smtp_sink PORT COUNT_FILE`` serves aiosmtpd on uvloop on
127.0.0.1:PORT in its own process (as a real mail server would be, not sharing a
core's time with the benchmark) and keeps the number of messages received in
COUNT_FILE, rewritten at most every 50 ms; the file exists once the server listens.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import sys
from typing import Any

import uvloop
from aiosmtpd.smtp import SMTP


class Counter:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received += 1
        return "250 OK"


def _write(path: pathlib.Path, value: int) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(str(value))
    os.replace(temporary, path)


async def serve(port: int, path: pathlib.Path) -> None:
    counter = Counter()
    loop = asyncio.get_running_loop()
    await loop.create_server(lambda: SMTP(counter), "127.0.0.1", port)
    written = -1
    while True:
        if counter.received != written:
            written = counter.received
            _write(path, written)
        await asyncio.sleep(0.05)


if __name__ == "__main__":
    uvloop.run(serve(int(sys.argv[1]), pathlib.Path(sys.argv[2])))
