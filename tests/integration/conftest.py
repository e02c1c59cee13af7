"""Postgres fixtures: one server per session, one migrated template, one database per test.

``postgres_dsn`` is ``DATABASE_URL`` when set (the role needs CREATEDB), else a
throwaway server started for the session (see ``postgres_server``). The schema is
migrated once into a template database, and every test that asks for
``database_dsn`` or ``db_connection`` gets its own copy (``CREATE DATABASE ...
TEMPLATE ...``), so tests are isolated from each other and pay for a file copy, not
for a migration. A server that cannot be started skips these tests, except under
``CI=true``, where it fails them: a CI run that silently skipped its database tests
would be green for the wrong reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from postgres_server import PostgresUnavailable, running_postgres

from statefleet.engine.store import migrate
from tests.required import unavailable


def dsn_for(dsn: str, database: str) -> str:
    """``dsn`` with its database replaced by ``database``."""
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def create_database(admin_dsn: str, name: str, *, template: str) -> None:
    connection = await asyncpg.connect(admin_dsn)
    try:
        await connection.execute(
            f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(template)}"
        )
    finally:
        await connection.close()


async def drop_database(admin_dsn: str, name: str) -> None:
    connection = await asyncpg.connect(admin_dsn)
    try:
        # FORCE: a test that leaked a connection must not leak its database too.
        await connection.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """DSN of a server where the tests may create and drop databases."""
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    try:
        with running_postgres() as server:
            yield server.dsn
    except PostgresUnavailable as error:
        unavailable("Postgres", str(error))


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def template_database(postgres_dsn: str) -> AsyncIterator[str]:
    """Name of a database holding the fully migrated schema, copied by each test.

    The name is unique per session so that sessions sharing one ``DATABASE_URL`` server
    (parallel CI jobs, xdist workers) never copy or drop each other's template.
    """
    name = f"statefleet_template_{uuid.uuid4().hex[:12]}"
    try:
        await create_database(postgres_dsn, name, template="template0")
    except (OSError, asyncpg.PostgresError) as error:
        unavailable("Postgres", f"cannot create a database at {_redacted(postgres_dsn)}: {error!r}")
    try:
        # migrate() closes its connection: a template must have no sessions to be copied.
        await migrate(dsn_for(postgres_dsn, name))
        yield name
    finally:
        await drop_database(postgres_dsn, name)


@pytest_asyncio.fixture
async def database_dsn(postgres_dsn: str, template_database: str) -> AsyncIterator[str]:
    """DSN of a fresh, fully migrated database that only this test uses."""
    name = f"statefleet_test_{uuid.uuid4().hex[:16]}"
    await create_database(postgres_dsn, name, template=template_database)
    try:
        yield dsn_for(postgres_dsn, name)
    finally:
        await drop_database(postgres_dsn, name)


@pytest_asyncio.fixture
async def empty_database_dsn(postgres_dsn: str) -> AsyncIterator[str]:
    """DSN of a fresh database with no schema at all, for testing migrations themselves."""
    name = f"statefleet_empty_{uuid.uuid4().hex[:16]}"
    try:
        await create_database(postgres_dsn, name, template="template0")
    except (OSError, asyncpg.PostgresError) as error:
        unavailable("Postgres", f"cannot create a database at {_redacted(postgres_dsn)}: {error!r}")
    try:
        yield dsn_for(postgres_dsn, name)
    finally:
        await drop_database(postgres_dsn, name)


@pytest_asyncio.fixture
async def db_connection(database_dsn: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    """An open connection to this test's migrated database, closed afterwards."""
    connection: asyncpg.Connection[Any] = await asyncpg.connect(database_dsn)
    try:
        yield connection
    finally:
        await connection.close()


def _redacted(dsn: str) -> str:
    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


@pytest.fixture(scope="session")
def local_ray() -> Iterator[None]:
    """A local Ray for the whole session (see ``ray_support``)."""
    from ray_support import local_ray as started

    with started():
        yield


@pytest.fixture
async def api(database_dsn: str) -> AsyncIterator[Any]:
    """The API over real HTTP on a fresh database, with its engine and the tenants
    ``acme`` and ``globex`` (``api_support.running_api``)."""
    from api_support import running_api

    async with running_api(database_dsn) as running:
        yield running
