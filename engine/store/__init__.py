"""The durable store: Postgres schema, versioned migrations, and named SQL queries.

Everything the engine persists (definitions, instances, the audit log, tasks and
timers, the queue outbox, dead letters) lives in the tables that
``sql/migrations/`` creates; that folder's first file documents the layout.
"""

from statefleet.engine.store.migrate import (
    LOCK_KEY,
    Migration,
    MigrationError,
    load_migrations,
    migrate,
)
from statefleet.engine.store.queries import load_queries, parse_queries

__all__ = [
    "LOCK_KEY",
    "Migration",
    "MigrationError",
    "load_migrations",
    "load_queries",
    "migrate",
    "parse_queries",
]
