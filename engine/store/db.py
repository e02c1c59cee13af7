"""Connection pools with the codecs every query relies on.

jsonb goes through orjson both ways (asyncpg's default hands back strings), so
rows carry Python data and specs, snapshots and payloads are never re-parsed by
hand. One pool per process; Ray actors each create their own.
"""

from __future__ import annotations

import os
import uuid
from collections import deque
from typing import Any, TypeAlias

import asyncpg
import orjson
from asyncpg.pgproto.pgproto import UUID as _CUUID
from asyncpg.pool import PoolConnectionProxy

__all__ = [
    "Connection",
    "DeadlockDetected",
    "Pool",
    "Record",
    "create_pool",
    "init_connection",
    "json_null_text",
    "json_text",
    "new_uuid",
    "read_uuid",
]

#: What store functions accept: a plain connection or one borrowed from a pool.
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
#: A pool of connections. The rest of the engine names these types, never asyncpg:
#: the store is the one adapter to the database driver (tests/unit/test_architecture.py).
Pool: TypeAlias = "asyncpg.Pool[Any]"
#: Postgres aborted the transaction to break a deadlock; it rolled back whole, so it may
#: simply be tried again.
DeadlockDetected = asyncpg.DeadlockDetectedError
#: One row a query returned.
Record: TypeAlias = asyncpg.Record


def new_uuid() -> uuid.UUID:
    """A random (version 4) UUID, as asyncpg's own ``uuid.UUID`` subclass.

    The engine makes a few ids per instance (the instance, its tasks, outbox rows) and
    hashes, prints and encodes each of them dozens of times; the subclass (the type
    asyncpg returns for uuid columns anyway) does those in C: ``str`` about 9 times and
    ``hash`` twice as fast. The random bytes come from ``os.urandom`` in blocks of 256
    ids (:data:`_ready`): one system call per id cost more than the rest of making it.
    It equals and hashes like the ``uuid.UUID`` of the same value.
    """
    while True:  # other threads may take a whole refill before this one's turn
        try:
            return _CUUID(_ready.popleft())
        except IndexError:
            _refill()


#: Random UUID bytes not handed out yet (version and variant bits already set).
#: ``deque.popleft`` is atomic, so threads never share one; a refill racing another
#: only adds more. A forked child starts empty (:func:`os.register_at_fork`), so it
#: never hands out the ids its parent has in hand.
_ready: deque[bytes] = deque()


def _refill() -> None:
    block = bytearray(os.urandom(16 * 256))
    block[6::16] = bytes(b & 0x0F | 0x40 for b in block[6::16])  # version 4
    block[8::16] = bytes(b & 0x3F | 0x80 for b in block[8::16])  # RFC 4122 variant
    _ready.extend(bytes(block[at : at + 16]) for at in range(0, len(block), 16))


os.register_at_fork(after_in_child=_ready.clear)


def read_uuid(text: str) -> uuid.UUID:
    """``uuid.UUID(text)`` as :func:`new_uuid`'s type when ``text`` is the usual 32 or 36
    characters; the other forms ``uuid.UUID`` reads (braces, ``urn:uuid:``) still read.

    Raises:
        ValueError: ``text`` is not a UUID.
    """
    try:
        return _CUUID(text)
    except ValueError:
        return uuid.UUID(text)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def json_text(value: Any) -> str | None:
    """JSON for a ``text[]`` batch parameter cast to jsonb per row; ``None`` stays NULL."""
    return None if value is None else orjson.dumps(value).decode()


def json_null_text(value: Any) -> str:
    """JSON for a ``text[]`` batch parameter of a NOT NULL jsonb column: ``None`` is JSON null.

    An audit row's ``state_after`` has no value when entering the initial state
    failed (the step's snapshot is ``value: null``); the row must still be written.
    """
    return orjson.dumps(value).decode()


async def init_connection(connection: asyncpg.Connection[Any]) -> None:
    await connection.set_type_codec(
        "jsonb", encoder=_dumps, decoder=orjson.loads, schema="pg_catalog", format="text"
    )


async def _reset(connection: asyncpg.Connection[Any]) -> None:
    """What a connection needs before it goes back to the pool: no open transaction.

    asyncpg's default reset sends ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL`` on every release: a round trip per acquire, which profiling of the
    hello benchmark found among the top costs. The engine keeps no session state
    (its advisory locks are transaction-scoped, it never LISTENs, SETs or declares
    cursors outside a transaction), so only an abandoned transaction needs undoing.
    """
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool[Any]:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=init_connection, reset=_reset
    )
    assert pool is not None
    return pool
