"""Where the database benchmarks get their Postgres.

``DATABASE_URL`` (a role that may create databases) when set, else a throwaway,
non-durable server started with :func:`statefleet.embedded.throwaway_postgres` (the
test suite's helper). Every run works in a fresh, migrated database dropped afterwards.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg

from statefleet.embedded import throwaway_postgres
from statefleet.engine.store import migrate


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The DSN of a server where databases may be created and dropped."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    with throwaway_postgres(prefer="system") as (process, _directory):
        yield process.dsn


def dsn_for(admin_dsn: str, database: str) -> str:
    base, _, query = admin_dsn.partition("?")
    return base.rsplit("/", 1)[0] + "/" + database + (f"?{query}" if query else "")


@contextlib.asynccontextmanager
async def fresh_database(admin_dsn: str, *, migrated: bool = True) -> AsyncIterator[str]:
    """A new database (migrated unless told otherwise), dropped on exit."""
    name = f"statefleet_bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = dsn_for(admin_dsn, name)
        try:
            if migrated:
                await migrate(dsn)
            yield dsn
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
