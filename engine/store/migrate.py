"""Versioned schema migrations: plain SQL files applied in order, once, under a lock.

Migrations are ``sql/migrations/NNNN_slug.sql`` in this package. ``migrate`` applies
the pending ones in one transaction that first takes a Postgres advisory lock, so every
process may call it at start-up: when two start at once, one migrates and the other
waits, then finds nothing to do. Each applied migration is recorded in
``schema_migrations`` with a checksum of its text, because an applied migration that was
edited afterwards means the database no longer matches the files, and that must stop
start-up rather than be discovered later.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

from statefleet.engine.record import record
from statefleet.engine.store.queries import load_queries

__all__ = ["LOCK_KEY", "Migration", "MigrationError", "load_migrations", "migrate"]

#: The advisory lock key ``migrate`` holds: the first 8 bytes of sha256("statefleet.migrate"),
#: so it cannot collide with small integer keys that other code may pick.
LOCK_KEY = int.from_bytes(hashlib.sha256(b"statefleet.migrate").digest()[:8], "big", signed=True)

_FILENAME = re.compile(r"^(?P<version>\d{4})_(?P<slug>[a-z0-9_]+)\.sql$")
_QUERIES = load_queries("migrate.sql")

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    # asyncpg's classes are generic only in its stubs, so the alias exists for mypy alone.
    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]


class MigrationError(Exception):
    """The database and the migration files disagree; nothing was applied."""


@record
class Migration:
    """One migration file.

    Attributes:
        version: the file's number; migrations apply in increasing order.
        name: the file name without ``.sql`` (``"0001_initial"``).
        sql: the statements, run as one simple-protocol batch.
        checksum: sha256 of the text with line endings normalised, so a checkout that
            converts line endings does not look like an edit.
    """

    version: int
    name: str
    sql: str
    checksum: str

    @classmethod
    def from_text(cls, filename: str, sql: str) -> Migration:
        """Build a migration from its file name and text.

        Raises:
            MigrationError: the name is not ``NNNN_slug.sql``.
        """
        match = _FILENAME.match(filename)
        if match is None:
            raise MigrationError(
                f"migration file {filename!r} is not named NNNN_slug.sql "
                "(four digits, an underscore, lower-case letters, digits or underscores)"
            )
        text = sql.replace("\r\n", "\n")
        checksum = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return cls(int(match["version"]), filename.removesuffix(".sql"), text, checksum)


def load_migrations() -> list[Migration]:
    """The migrations shipped with statefleet, in order.

    Raises:
        MigrationError: a file is misnamed or two files share a version number.
    """
    folder = resources.files(__package__ or __name__).joinpath("sql", "migrations")
    migrations = [
        Migration.from_text(entry.name, entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return _in_order(migrations)


async def migrate(
    dsn_or_connection: str | Connection, *, migrations: Sequence[Migration] | None = None
) -> list[str]:
    """Bring the database's schema up to date.

    Safe to call from every process at start-up: runs in one transaction under an
    advisory lock (see :data:`LOCK_KEY`), so concurrent callers serialise and a re-run is
    a no-op. Given a connection that is already in a transaction, the work joins it (as a
    savepoint) and the lock is held until that outer transaction ends.

    Args:
        dsn_or_connection: a ``postgresql://`` DSN (a connection is opened and closed
            here) or an open asyncpg connection.
        migrations: the migrations to apply; the packaged ones by default. Tests and tools
            pass their own.

    Returns:
        The names of the migrations applied by this call, in order; empty when the
        schema was already current.

    Raises:
        MigrationError: an applied migration's file has changed (different checksum or
            name), or a pending migration is numbered below one already applied. The
            transaction rolls back; nothing is applied.
    """
    wanted = _in_order(load_migrations() if migrations is None else list(migrations))
    if isinstance(dsn_or_connection, str):
        connection: asyncpg.Connection[Any] = await asyncpg.connect(dsn_or_connection)
        try:
            return await _apply(connection, wanted)
        finally:
            await connection.close()
    return await _apply(dsn_or_connection, wanted)


async def _apply(connection: Connection, wanted: list[Migration]) -> list[str]:
    async with connection.transaction():
        # Lock first: the table check below must not race another process's first migrate.
        await connection.execute(_QUERIES["lock"], LOCK_KEY)
        await connection.execute(_QUERIES["create_schema_migrations"])
        applied = {
            row["version"]: (row["name"], row["checksum"])
            for row in await connection.fetch(_QUERIES["applied"])
        }
        pending = _pending(wanted, applied)
        for migration in pending:
            await connection.execute(migration.sql)
            await connection.execute(
                _QUERIES["record"], migration.version, migration.name, migration.checksum
            )
    return [migration.name for migration in pending]


def _pending(wanted: list[Migration], applied: dict[int, tuple[str, str]]) -> list[Migration]:
    # Versions recorded in the database but absent from `wanted` are ignored: during a
    # rolling deploy, processes of the previous release start against the newer schema.
    for migration in wanted:
        if migration.version not in applied:
            continue
        name, checksum = applied[migration.version]
        if name != migration.name or checksum != migration.checksum:
            raise MigrationError(
                f"migration {migration.version:04d} was applied as {name!r} "
                f"(checksum {checksum[:12]}) but the file is now {migration.name!r} "
                f"(checksum {migration.checksum[:12]}): applied migrations must not change; "
                "add a new migration instead"
            )
    pending = [m for m in wanted if m.version not in applied]
    newest = max(applied, default=0)
    late = [m.name for m in pending if m.version < newest]
    if late:
        raise MigrationError(
            f"migrations {late} are numbered below {newest:04d}, which is already applied; "
            "renumber them after it"
        )
    return pending


def _in_order(migrations: list[Migration]) -> list[Migration]:
    ordered = sorted(migrations, key=lambda m: m.version)
    for before, after in itertools.pairwise(ordered):
        if before.version == after.version:
            raise MigrationError(
                f"migrations {before.name!r} and {after.name!r} share version {after.version}"
            )
    return ordered
