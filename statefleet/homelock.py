"""One ``statefleet up`` per ``STATEFLEET_HOME``: an exclusive lock the kernel releases.

A second ``up`` on the same home used to find the first one's Postgres pid file, take
the live server for an orphan and stop it under the first stack. The home is now owned
through ``flock`` on ``$STATEFLEET_HOME/up.lock``: the kernel drops the lock when the
owner's last descriptor closes, which includes a SIGKILL, so a killed ``up`` never
blocks the next one (a pid file alone cannot tell a dead owner from a reused pid). The
file also says who holds it (pid and URL, as JSON), so the refusal can name them.

The descriptor is opened close-on-exec (Python's default), so the Postgres, Ray and mail
sink processes ``up`` starts never hold the lock after ``up`` itself is gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import pathlib
from collections.abc import Iterator

__all__ = ["LOCK_FILE", "HomeBusy", "home_lock"]

LOCK_FILE = "up.lock"


class HomeBusy(RuntimeError):
    """Another live process holds the home; the message names its pid and URL."""


def _holder(path: pathlib.Path) -> str:
    try:
        data = json.loads(path.read_text())
        return f"pid {int(data['pid'])}, {data['url']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "its pid and URL are not recorded yet"


@contextlib.contextmanager
def home_lock(home: pathlib.Path, url: str) -> Iterator[pathlib.Path]:
    """Holds ``home``'s lock for the ``with`` block, recording this pid and ``url``.

    Raises:
        HomeBusy: another process holds it; nothing in ``home`` was touched.
    """
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = home / LOCK_FILE
    # Not O_TRUNC: the holder's record must survive a refused attempt to read it.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            raise HomeBusy(
                f"another `statefleet up` is running on {home} ({_holder(path)}); "
                "stop it first, or give this one another STATEFLEET_HOME"
            ) from None
        record = json.dumps({"pid": os.getpid(), "url": url}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record + b"\n", 0)
        try:
            yield path
        finally:
            # Emptied, not removed: unlinking a lock file races with a process that has
            # just opened it and would then lock a file nobody else sees.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)
