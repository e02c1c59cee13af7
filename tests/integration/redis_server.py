"""A throwaway ``redis-server`` for the BullMQ tests: free port, temp dir, no persistence.

Tests use ``REDIS_URL`` when it is set; otherwise they start one of these. A machine
without ``redis-server`` skips the BullMQ tests, except under ``CI=true``, where it
fails them (a green CI run must have exercised Redis).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tests.required import unavailable


class RedisUnavailable(RuntimeError):
    """``redis-server`` is missing or did not start."""


@dataclass
class RedisServer:
    port: int
    directory: str
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        """Stop the server (SIGTERM, then wait), as a crash-free restart needs."""
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)

    def start(self) -> None:
        """(Re)start the server on the same port and directory."""
        self.process = _spawn(self.port, self.directory)
        _wait_ready(self.port, self.process)

    def shutdown(self, *, save: bool) -> None:
        """``SHUTDOWN SAVE`` (data kept in ``dump.rdb`` for the next start) or ``NOSAVE``."""
        if self.process.poll() is not None:
            return
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self.port), 5) as s,
        ):
            s.sendall(b"SHUTDOWN SAVE\r\n" if save else b"SHUTDOWN NOSAVE\r\n")
            s.recv(64)  # the server closes the connection as it exits
        self.process.wait(timeout=30)

    def restart(self, *, keep_data: bool = True) -> None:
        """Stop the server and start it again on the same port and directory.

        With ``keep_data`` it saves on the way down and reloads on the way up, as a
        clean restart of a persistent Redis does; without, every key is gone.
        """
        self.shutdown(save=keep_data)
        self.start()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _spawn(port: int, directory: str) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RedisUnavailable("redis-server is not on the PATH (apt-get install redis-server)")
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory]
    args += ["--save", "", "--appendonly", "no", "--logfile", os.path.join(directory, "log")]
    return subprocess.Popen(args, stdin=subprocess.DEVNULL)


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RedisUnavailable(f"redis-server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                return
        time.sleep(0.02)
    raise RedisUnavailable(f"redis-server did not answer on port {port} within {timeout}s")


@contextlib.contextmanager
def running_redis() -> Iterator[RedisServer]:
    """A fresh redis-server for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix="statefleet-redis-") as directory:
        port = _free_port()
        server = RedisServer(port, directory, _spawn(port, directory))
        try:
            _wait_ready(port, server.process)
            yield server
        finally:
            server.stop()


@contextlib.contextmanager
def redis_url_for_tests() -> Iterator[str]:
    """``REDIS_URL`` when set, else the URL of a throwaway server."""
    url = os.environ.get("REDIS_URL", "").strip()
    if url:
        yield url
        return
    try:
        with running_redis() as server:
            yield server.url
    except RedisUnavailable as error:
        unavailable("Redis", str(error))
