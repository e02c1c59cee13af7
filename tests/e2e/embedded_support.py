"""Running ``statefleet up``/``demo`` as real subprocesses and checking they leave nothing.

A process tree is sampled while it runs (psutil: every descendant, with its start
time so a reused pid is not mistaken for a survivor); afterwards none may be alive.
Ray's head processes and Postgres are descendants of the statefleet process, so this
finds them without matching names (other sessions on the machine run their own).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import psutil

STATEFLEET = [sys.executable, "-m", "statefleet"]
#: Variables that would point the stack elsewhere than its embedded defaults.
_OVERRIDES = ("DATABASE_URL", "WORKFLOW_QUEUE_DRIVER", "REDIS_URL", "APP_ENV", "RAY_ADDRESS")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _OVERRIDES}
    env |= {"STATEFLEET_SHARDS": "2", "STATEFLEET_POOLS": "1", "PYTHONUNBUFFERED": "1"}
    return env | extra


@contextmanager
def state_home() -> Iterator[pathlib.Path]:
    """A state dir under /tmp that the server's account can reach (pytest's is 0700)."""
    home = pathlib.Path(tempfile.mkdtemp(prefix="statefleet-e2e-"))
    home.chmod(0o711)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


class TreeWatcher:
    """Collects the descendants of ``pid`` every 0.2 s until :meth:`stop`."""

    def __init__(self, pid: int) -> None:
        self.seen: dict[int, float] = {}
        self._root = pid
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.is_set():
            try:
                for child in psutil.Process(self._root).children(recursive=True):
                    try:
                        self.seen.setdefault(child.pid, child.create_time())
                    except psutil.Error:
                        continue
            except psutil.Error:
                return
            self._done.wait(0.2)

    def stop(self) -> None:
        self._done.set()
        self._thread.join()

    def survivors(self, timeout: float = 30.0) -> list[str]:
        """Descendants still alive after ``timeout`` seconds (as ``pid cmdline``)."""
        deadline = time.monotonic() + timeout
        while True:
            alive = []
            for pid, created in self.seen.items():
                try:
                    process = psutil.Process(pid)
                    if process.create_time() == created and process.status() != "zombie":
                        alive.append(f"{pid} {' '.join(process.cmdline())[:120]}")
                except psutil.Error:
                    continue
            if not alive or time.monotonic() > deadline:
                return alive
            time.sleep(0.5)


def spawn(args: list[str], env: Mapping[str, str], log: pathlib.Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*STATEFLEET, *args], env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )


def wait_for_line(log: pathlib.Path, prefix: str, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if line.startswith(prefix):
                return line
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"no line {prefix!r}; output:\n{log.read_text(errors='replace')}")
